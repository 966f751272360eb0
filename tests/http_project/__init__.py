"""A small project the HTTP middleware tests serve, in-process and through real servers."""
