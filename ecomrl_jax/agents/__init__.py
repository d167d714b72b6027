"""Learners (one module each) and rule-based baselines."""
