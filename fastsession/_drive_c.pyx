"""The core's driver, compiled twin of ``_drive_py``.

Every request runs two routines (get_session, close). The pure driver pays
for each the StopIteration a generator's return raises through ``send``,
and a tuple for each call's arguments; here the routine is resumed with
PyIter_Send (its result comes back without an exception) and each backend
method is called straight from the yielded tuple (vectorcall).
"""

cimport cython
from cpython.ref cimport PyObject, Py_XDECREF

cdef extern from *:
    """
    /* PyIter_Send (Python 3.10+): 1 and the yielded value, 0 and the returned value, -1 on an error.
       Python 3.9 has none: the same contract from next/send and the StopIteration's value. */
    static int fastsession_send(PyObject *iterator, PyObject *arg, PyObject **result)
    {
    #if PY_VERSION_HEX >= 0x030A0000
        return (int)PyIter_Send(iterator, arg, result);
    #else
        static PyObject *send_name = NULL;
        PyObject *out;
        if (send_name == NULL && (send_name = PyUnicode_InternFromString("send")) == NULL)
            return -1;
        out = PyObject_CallMethodOneArg(iterator, send_name, arg);  /* send(None) starts it, as next() does */
        if (out != NULL) {
            *result = out;
            return 1;
        }
        if (_PyGen_FetchStopIterationValue(result) == 0)
            return 0;
        *result = NULL;
        return -1;
    #endif
    }
    """
    int send "fastsession_send" (object iterator, object arg, PyObject **result) except? -1

cdef extern from "Python.h":
    PyObject *PyObject_Vectorcall(object callable, PyObject **args, size_t nargsf, PyObject *kwnames) except NULL
    PyObject **PySequence_Fast_ITEMS(object sequence)
    Py_ssize_t PyTuple_GET_SIZE(object tuple)


cdef inline object owned(PyObject *result):
    # The object of a new reference the C-API handed over.
    value = <object>result
    Py_XDECREF(result)
    return value


@cython.boundscheck(True)
@cython.wraparound(True)
cdef object generic_call(object backend, object call):
    # The pure twin's call, checked as Python checks it (the module's directives skip bounds checks).
    return getattr(backend, call[0])(*call[1:])


def run(backend, steps):
    """Carry out a core routine's backend calls one after another; its result."""
    cdef PyObject *result = NULL
    cdef int status = send(steps, None, &result)
    cdef object item = owned(result)
    cdef object call
    while status:  # 1: a call yielded; 0: the routine returned
        try:
            if type(item) is tuple and PyTuple_GET_SIZE(item) > 0:
                # The arguments are read in place: a tuple cannot change under the call (a list could be
                # resized by the method called, leaving the pointers dangling: it takes the path below).
                call = item
                value = owned(PyObject_Vectorcall(getattr(backend, call[0]), PySequence_Fast_ITEMS(call) + 1,
                                                  PyTuple_GET_SIZE(call) - 1, NULL))
            else:  # anything else, exactly as the pure twin: its errors are thrown into the routine too
                value = generic_call(backend, item)
        except BaseException as exc:
            try:
                item = steps.throw(exc)
            except StopIteration as done:
                return done.value
            continue
        status = send(steps, value, &result)
        item = owned(result)
    return item
