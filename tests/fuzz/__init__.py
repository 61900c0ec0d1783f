"""The permanent fuzz suite: hypothesis against a real collector on loopback (issue 11)."""
