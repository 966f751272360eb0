# dp_plain.h: the A/B switches (all off in a release build); included first by each module.
cdef extern from "dp_plain.h":
    const bint DP_PLAIN_TLS
    const bint DP_PLAIN_STR
    const bint DP_PLAIN_VECTORCALL
    const bint DP_PLAIN_ITERNEXT
    const bint DP_PLAIN_CALL1
    const bint DP_PLAIN_BORROWED
    const bint DP_PLAIN_TIMING
    const bint DP_PLAIN_DICTGET
    const bint DP_PLAIN_CONTEXTVAR
    const bint DP_PLAIN_EXTRAS_TLS
