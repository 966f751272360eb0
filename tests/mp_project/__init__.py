"""A small project served by real gunicorn/uvicorn workers in multiprocess mode (tests/test_multiprocess_servers.py)."""
