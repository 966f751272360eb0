"""The default path's awaiting under ASGI, in Python bytecode: CPython resumes a stack of native
coroutines frame to frame, without re-entering the C eval loop per layer (an awaitable written
in C costs a C-level re-entry on every resumption of the request's task). Imports nothing."""


async def record_around(recorder, request, awaitable, recorded, started):
    # ``recorder._finish`` records the response (logs its own failures), ``_fail`` forgets the request.
    try:
        response = await awaitable
    except BaseException:
        recorder._fail(request)
        raise
    recorder._finish(request, response, recorded, started)
    return response
