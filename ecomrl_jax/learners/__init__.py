"""Generic learners (one module each); they import no domain code."""
