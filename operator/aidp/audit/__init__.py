"""Cluster audit: who talks to AI, under which terms, and the evidence (CONTRACT section 5)."""
