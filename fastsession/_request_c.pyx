"""The common request, compiled twin of ``_request_py`` (read its docstring: the same rules).

The pure twin calls the backend's methods, as this twin does for a server
backend (Redis, PostgreSQL); on files, the backend's fused path is taken
straight to the compiled kernels (``open_session`` to lock and read,
``commit_locked`` or ``unlock`` to end, the mtime refreshed as ``release``
does under ``max_age``), which is what those methods do for a backend whose
``request_path`` is set. Any other outcome (the lock taken by
another, no shard folder yet, nothing stored, a corrupt file) goes through
the backend's own methods, as the pure twin's call would.

The store's own state (its StoreCore slots) is read and written by the
slots' offsets in the object, found once from StoreCore's slot descriptors,
after a check that the object is a StoreCore: what the pure twin's
attribute accesses do, without a lookup of the name in the type for each
(a slot never set raises the same AttributeError). A subclass that hid one
of those slots behind a property of its own would not be asked; none does.

``copied`` (StoreFactory's) makes a new store of a template's slots.
"""

from cpython.dict cimport PyDict_Contains, PyDict_Update

cdef extern from *:
    """
    #include "structmember.h"

    /* The offset of an object slot's pointer in its objects, from its descriptor; -1 and TypeError for
       anything else. */
    static Py_ssize_t fastsession_slot_offset(PyObject *member)
    {
        PyMemberDef *definition;
        if (Py_TYPE(member) != &PyMemberDescr_Type) {
            PyErr_Format(PyExc_TypeError, "%R is not a slot", member);
            return -1;
        }
        definition = ((PyMemberDescrObject *)member)->d_member;
        if (definition->type != T_OBJECT_EX || (definition->flags & READONLY)) {
            PyErr_Format(PyExc_TypeError, "%R is not a slot that holds an object", member);
            return -1;
        }
        return definition->offset;
    }

    /* A slot's value (a new reference) by its offset; NULL and AttributeError when it is not set. */
    static PyObject *fastsession_slot_get(PyObject *object, Py_ssize_t offset, PyObject *name)
    {
        PyObject *value = *(PyObject **)((char *)object + offset);
        if (value == NULL) {
            PyErr_Format(PyExc_AttributeError, "'%.200s' object has no attribute '%U'", Py_TYPE(object)->tp_name,
                         name);
            return NULL;
        }
        Py_INCREF(value);
        return value;
    }

    static void fastsession_slot_set(PyObject *object, Py_ssize_t offset, PyObject *value)
    {
        PyObject *old = *(PyObject **)((char *)object + offset);
        Py_INCREF(value);
        *(PyObject **)((char *)object + offset) = value;
        Py_XDECREF(old);
    }

    /* A new object of template's type (whose __new__ is object's) with each slot of members (slot descriptors
       of that type and its bases) set to template's: pointers copied and counted, where a copy made in Python
       runs the interpreter for every slot. */
    static PyObject *fastsession_copied(PyObject *template, PyObject *members)
    {
        PyTypeObject *type = Py_TYPE(template), *checked = NULL;
        Py_ssize_t i, offset, count = PyTuple_GET_SIZE(members);
        PyObject *made, *member;
        if (type->tp_new != PyBaseObject_Type.tp_new) {
            PyErr_Format(PyExc_TypeError, "copied: %.200s objects are not made by object.__new__", type->tp_name);
            return NULL;
        }
        for (i = 0; i < count; i++) {  /* checked whole before anything is made */
            member = PyTuple_GET_ITEM(members, i);
            offset = fastsession_slot_offset(member);
            if (offset < 0)
                return NULL;
            if (PyDescr_TYPE(member) != checked && !PyType_IsSubtype(type, PyDescr_TYPE(member))) {
                PyErr_Format(PyExc_TypeError, "copied: %R is not a slot of %.200s objects", member, type->tp_name);
                return NULL;
            }
            checked = PyDescr_TYPE(member);  /* (a class's slots come together: its check made once) */
            if (*(PyObject **)((char *)template + offset) == NULL) {
                PyErr_Format(PyExc_AttributeError, "'%.200s' object has no attribute '%s'", type->tp_name,
                             ((PyMemberDescrObject *)member)->d_member->name);
                return NULL;
            }
        }
        made = type->tp_alloc(type, 0);
        if (made == NULL)
            return NULL;
        for (i = 0; i < count; i++) {
            offset = ((PyMemberDescrObject *)PyTuple_GET_ITEM(members, i))->d_member->offset;
            Py_INCREF(*(PyObject **)((char *)template + offset));
            *(PyObject **)((char *)made + offset) = *(PyObject **)((char *)template + offset);
        }
        return made;
    }

    /* object.__class__ = to, for an object whose class has been switched to ``to`` once already by
       __class__'s own checks (the same layout): the pointer swapped and the classes' counts moved, as that
       assignment does once its checks pass. */
    static void fastsession_set_class(PyObject *object, PyTypeObject *to)
    {
        PyTypeObject *from = Py_TYPE(object);
        if (to->tp_flags & Py_TPFLAGS_HEAPTYPE)
            Py_INCREF(to);
        Py_SET_TYPE(object, to);
        if (from->tp_flags & Py_TPFLAGS_HEAPTYPE)
            Py_DECREF(from);
    }
    """
    Py_ssize_t slot_offset "fastsession_slot_offset" (object member) except -1
    object slot_get "fastsession_slot_get" (object object, Py_ssize_t offset, object name)
    void slot_set "fastsession_slot_set" (object object, Py_ssize_t offset, object value)
    object fastsession_copied(object template, tuple members)
    void set_class "fastsession_set_class" (object object, type to)

from os import utime
from time import time

import orjson

from fastsession import _holder
from fastsession._ids_c import is_valid_id, new_session_id
from fastsession._io_c import commit_locked, open_session
from fastsession._lock_c import unlock
from fastsession.encoding import META, encode
from fastsession.errors import SessionRevoked
from fastsession.session import CLOSED, Session

cdef object dumps = orjson.dumps
cdef str FILES = "files"  # a FileBackend's request_path: its kernels are called here straight
cdef object JSONEncodeError = orjson.JSONEncodeError

# StoreCore's slots this path reads and writes, by their offsets in a store (found once, from their
# descriptors): a pointer read or written, where an attribute access from C looks the name up in the type.
cdef struct StoreSlots:
    Py_ssize_t accessed, backend, closed, cookie_after, doomed, doomed_ids, encrypt, expired, handle, indexed
    Py_ssize_t born, max_lifetime, max_size, meta, optimistic, plain, retired, session, cookie_name, stamp, stored
    Py_ssize_t trans
    Py_ssize_t session_id  # (Session's)

cdef StoreSlots at
cdef object store_type = None  # StoreCore, once its slots are found
cdef dict store_globals = None  # fastsession.store's, for its fork generation
cdef type closed_plain = None  # CLOSED[Session], once a plain Session has been switched to it by __class__


cdef int find_slots() except -1:
    global store_type, store_globals
    from fastsession import store
    from fastsession.store import StoreCore

    members = StoreCore.__dict__
    at.accessed = slot_offset(members["accessed"])
    at.backend = slot_offset(members["backend"])
    at.born = slot_offset(members["_born"])
    at.closed = slot_offset(members["_closed"])
    at.cookie_after = slot_offset(members["_cookie_after"])
    at.doomed = slot_offset(members["_doomed"])
    at.doomed_ids = slot_offset(members["_doomed_ids"])
    at.encrypt = slot_offset(members["encrypt"])
    at.expired = slot_offset(members["_expired"])
    at.handle = slot_offset(members["_handle"])
    at.indexed = slot_offset(members["_indexed"])
    at.max_lifetime = slot_offset(members["max_lifetime"])
    at.max_size = slot_offset(members["max_size"])
    at.meta = slot_offset(members["_meta"])
    at.optimistic = slot_offset(members["_optimistic"])
    at.plain = slot_offset(members["_plain"])
    at.retired = slot_offset(members["_retired"])
    at.session = slot_offset(members["_session"])
    at.cookie_name = slot_offset(members["session_cookie_name"])
    at.stamp = slot_offset(members["_stamp"])
    at.stored = slot_offset(members["_stored"])
    at.trans = slot_offset(members["trans"])
    at.session_id = slot_offset(Session.__dict__["session_id"])
    store_globals = store.__dict__
    store_type = StoreCore
    return 0


cdef inline int check_store(object store) except -1:
    # The offsets are StoreCore's: only a StoreCore's slots are read by them.
    if store_type is None:
        find_slots()
    if not isinstance(store, store_type):
        raise TypeError(f"the request path takes a store (a StoreCore), not {type(store).__name__}")
    return 0


cdef object cookie_id(object store):
    # store._cookie_id(), the common answer inline: a cookie whose value is an id.
    cookie = slot_get(store, at.trans, "trans").get_cookie(slot_get(store, at.cookie_name, "session_cookie_name"))
    if cookie is None:
        return None
    try:
        value = cookie.value
    except AttributeError:  # the general core's TypeError, word for word
        return store._cookie_id()
    return value if is_valid_id(value) else None


cdef object new_session(object session_class, str session_id, object data):
    # session_class(session_id, data), or session_class(session_id) for a new one (data None); a plain Session
    # is made without running its __init__ in Python.
    cdef object session
    if session_class is not Session:
        return session_class(session_id) if data is None else session_class(session_id, data)
    session = Session.__new__(Session)
    if data is not None:
        PyDict_Update(session, data)
    slot_set(session, at.session_id, session_id)
    return session


cdef close_session(object session):
    # session.__class__ = CLOSED[type(session)]; a plain Session's switched by its pointer after the first.
    global closed_plain
    cdef type kind = type(session)
    if kind is Session and closed_plain is not None:
        set_class(session, closed_plain)
        return
    closed = CLOSED[kind]
    session.__class__ = closed  # (checks that the layouts match)
    if kind is Session:
        closed_plain = closed


cdef object hold(object store, object session, object handle, object stored, object stamp):
    # StoreCore._hold(session, handle, stored, stamp), without a Python call.
    slot_set(store, at.session, session)
    slot_set(store, at.handle, handle)
    slot_set(store, at.stored, stored)
    slot_set(store, at.stamp, stamp)
    slot_set(store, at.meta, None)
    return session


cdef tuple files_open_load(object backend, str session_id, bint wait):
    # FileBackend.open_load(session_id, wait): the kernel locks and reads in one call; anything but a live
    # session read, load's rules.
    cdef tuple handle
    record = _holder._record or _holder.holder_record()
    max_age = backend.max_age
    opened = open_session(backend.directory, session_id, record, max_age is not None)
    if opened is None:  # locked by another, or no shard yet: the backend waits or makes it
        if not wait:
            return backend.open_load(session_id, False)
        handle = backend.open(session_id)
        return handle, backend.load_or_release(handle)
    handle, loaded = opened
    # Absent, corrupt, a 0.1 file, idle past max_age: load's rules.
    if loaded is None or (max_age is not None and time() - <double>loaded[2] > max_age):
        return handle, backend.load_or_release(handle)
    return opened


cdef release(object backend, bint on_files, object handle, object stamp):
    # backend.release(handle, stamp); on files: the mtime refreshed when a quarter of max_age passed, then unlocked.
    if not on_files:
        backend.release(handle, stamp)
        return
    max_age = backend.max_age
    if stamp and max_age is not None and time() - stamp > max_age / 4:  # kept from idling out
        try:
            utime(handle[0])
        except FileNotFoundError:
            pass
    unlock(handle[2], handle[1])


cdef save(object backend, bint on_files, object handle, bytes body):
    # backend.save(handle, body); on files: the locked commit, SessionRevoked over a revoked session's mark.
    if not on_files:
        backend.save(handle, body)
        return
    try:
        commit_locked(handle[2], handle[1], handle[0], body, backend.fsync)
    except IsADirectoryError:  # (the kernel removed the lockfile: released)
        raise backend._revoked(handle[0]) from None


def copied(template, tuple members):
    """A new object of ``template``'s type, each of ``members`` (its slot descriptors) set to ``template``'s value."""
    return fastsession_copied(template, members)


def store_like(template, tuple members, trans):
    """``copied(template, members)`` of a store, given ``trans`` and this process's fork mark: the store its
    constructor would make for ``trans`` (StoreFactory's)."""
    check_store(template)
    made = fastsession_copied(template, members)
    slot_set(made, at.trans, trans)
    slot_set(made, at.born, store_globals["_generation"])  # made in this process, after any fork
    return made


def open_request(store, create, files=None):
    """``get_session(create)`` of a store that holds no session yet; NotImplemented when not the common case.

    ``files``: the FileBackend of an async store, called inline on its event loop: a lock someone holds is
    never waited for here (NotImplemented, nothing held: the async core waits on the loop).
    """
    check_store(store)
    cdef object backend = slot_get(store, at.backend, "backend") if files is None else files
    cdef object kind = getattr(backend, "request_path", None)
    if (
        not kind
        or slot_get(store, at.closed, "_closed")
        or slot_get(store, at.expired, "_expired")
        or slot_get(store, at.optimistic, "_optimistic")
        or slot_get(store, at.encrypt, "encrypt")
        or slot_get(store, at.max_lifetime, "max_lifetime") is not None
    ):
        return NotImplemented
    cdef bint on_files = kind == FILES
    slot_set(store, at.accessed, True)
    session_id = cookie_id(store)
    if session_id is not None:
        opened = files_open_load(backend, session_id, files is None) if on_files else backend.open_load(session_id)
        if opened is None:
            return NotImplemented
        handle, loaded = opened
        if loaded is not None:
            data, stored, stamp = loaded
            if PyDict_Contains(data, META):  # (a user binding, a creation time: the general core's)
                return store._held_open(session_id, create, handle, loaded)
            return hold(store, new_session(store.session_class, session_id, data), handle, stored, stamp)
        release(backend, on_files, handle, 0.0)
    if not create:
        return None
    new_id = new_session_id()
    handle = backend.open(new_id) if files is None else backend.try_open(new_id)
    if handle is None:
        return NotImplemented
    session = hold(store, new_session(store.session_class, new_id, None), handle, None, 0.0)
    slot_get(store, at.trans, "trans").set_cookie_value(slot_get(store, at.cookie_name, "session_cookie_name"), new_id)
    return session


def close_request(store, files=None):
    """``close()`` of a store in the common case (None when done); NotImplemented, having done nothing, otherwise.

    ``files``: the FileBackend of an async store, called inline on its event loop.
    """
    cdef bint stored_new = False
    cdef object error = None
    cdef object body
    check_store(store)
    backend = slot_get(store, at.backend, "backend") if files is None else files
    kind = getattr(backend, "request_path", None)
    if (
        not kind
        or slot_get(store, at.optimistic, "_optimistic")
        or slot_get(store, at.encrypt, "encrypt")
        or slot_get(store, at.meta, "_meta") is not None
        or slot_get(store, at.indexed, "_indexed") is not None
        or slot_get(store, at.retired, "_retired") is not None
        or slot_get(store, at.doomed, "_doomed") is not None
        or slot_get(store, at.doomed_ids, "_doomed_ids") is not None
    ):
        return NotImplemented
    if slot_get(store, at.closed, "_closed"):
        return None
    cdef bint on_files = kind == FILES
    slot_set(store, at.closed, True)
    session = slot_get(store, at.session, "_session")
    if session is not None:
        close_session(session)
        handle = slot_get(store, at.handle, "_handle")
        stored = slot_get(store, at.stored, "_stored")
        stamp = slot_get(store, at.stamp, "_stamp")
        slot_set(store, at.session, None)  # (StoreCore._drop_current)
        slot_set(store, at.handle, None)
        slot_set(store, at.stored, None)
        try:
            body = dumps(session)
        except JSONEncodeError:
            body = None
        limit = slot_get(store, at.max_size, "max_size")
        try:
            if body is None or len(body) > limit:
                body = encode(session, limit, None)  # raises the error that names the key
        except BaseException as exc:  # (SerializationError, SessionTooLarge): the lock goes first
            error = exc
            body = None
        plain = slot_get(store, at.plain, "_plain")
        try:
            if body is None or (stored is None and not session):  # new and empty: never stored
                release(backend, on_files, handle, 0.0)
            elif stored is not None and body == (stored if plain is None else plain):  # _unchanged
                release(backend, on_files, handle, stamp)
            else:
                save(backend, on_files, handle, body)
                stored_new = stored is None
        except SessionRevoked:  # logged out everywhere while this request ran: it ends logged out
            slot_set(store, at.expired, True)
        except BaseException as exc:
            error = exc
    if error is None and not stored_new and not slot_get(store, at.expired, "_expired"):
        slot_set(store, at.cookie_after, None)  # (store._closed_with's end when nothing is to be told or changed)
        return None
    store._closed_with(session, stored_new, error)
    return None
