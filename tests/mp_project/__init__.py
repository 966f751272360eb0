"""A project served by real gunicorn/uvicorn workers in multiprocess mode (test_multiprocess_servers)."""
