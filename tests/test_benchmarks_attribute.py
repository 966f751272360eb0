"""benchmarks._attribute: our compiled code's share of a callgrind dump, without the application's."""

from __future__ import annotations

from benchmarks import _attribute

# A dump in callgrind's format (name compression, calls= lines followed by their inclusive cost):
# the middleware runs 30 instructions itself, calls a C helper (10) and hands the request on to
# Django (get_response: 1,000, of which our nested middleware's 7 are its own), a wrapped cache
# get calls the backend's Python get (500).
DUMP = """\
events: Ir
ob=(1) /x/django_prometheus/_core/_http_c.cpython-312-x86_64-linux-gnu.so
fn=(1) __pyx_f_http_c_10Middleware__call
1 30
cob=(2) /x/libpython3.12.so.1.0
cfn=(2) PyObject_CallOneArg
calls=1 0
1 1000
cob=(2)
cfn=(3) PyDict_GetItemWithError
calls=1 0
1 10
fn=(4) __pyx_f_http_c_10Middleware__call'2
1 7
ob=(3) /x/django_prometheus/_core/_cells_c.cpython-312-x86_64-linux-gnu.so
fn=(5) __pyx_pw_cells_c_instrument_get_3get
1 20
cob=(2)
cfn=(6) _PyFunction_Vectorcall'2
calls=1 0
1 500
ob=(2)
fn=(2)
1 993
fn=(3)
1 10
fn=(6)
1 500
"""


def test_counts_our_code_and_what_it_calls_but_not_what_it_hands_back(tmp_path):
    later, earlier = tmp_path / "out.3", tmp_path / "out.2"
    later.write_text(DUMP)
    earlier.write_text("events: Ir\n")
    rows = _attribute.per_op(later, earlier, 1)
    counted = {k: v for k, v in rows.items() if not k.startswith("handed back")}
    assert sum(counted.values()) == 30 + 10 + 7 + 20
    assert rows["handed back __pyx_f_http_c_10Middleware__call -> PyObject_CallOneArg"] == 1000
    assert rows["handed back __pyx_pw_cells_c_instrument_get_3get -> _PyFunction_Vectorcall'2"] == 500


def test_per_operation_is_the_difference_of_two_dumps_over_k(tmp_path):
    later, earlier = tmp_path / "out.3", tmp_path / "out.2"
    later.write_text(DUMP)
    earlier.write_text(DUMP.replace("1 30\n", "1 10\n"))
    rows = _attribute.per_op(later, earlier, 4)
    assert rows["self __pyx_f_http_c_10Middleware__call"] == 5.0
    assert rows["call __pyx_f_http_c_10Middleware__call -> PyDict_GetItemWithError"] == 0.0
