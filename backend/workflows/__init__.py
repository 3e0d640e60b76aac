"""Analyst workflows over an index: classify, few-shot, relevance feedback, where-is-this, ask, search by vector."""
