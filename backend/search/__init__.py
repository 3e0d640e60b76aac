"""Search: build a query (:mod:`.query`), run it over tiles or regions (:mod:`.run`) under spatial and
scene filters (:mod:`.filters`) or a location (:mod:`.location`), on one index or several (:mod:`.multi`)."""
