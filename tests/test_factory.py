"""StoreFactory: a long-lived maker of a request's stores, each the store the constructor would make.

The adapters make their stores so. A factory-made store must be the
constructor's in every slot (but its transaction), on every backend and
face; both twins of the ``copied`` kernel must copy alike and refuse alike;
a class whose constructor is not fastsession's, or a relative directory, is
made by its constructor each time.
"""

import os

import pytest
from conftest import TWINS, Transaction, compiled_twin
from helpers import fork_child, wait_ok

import fastsession
from fastsession import _kernels
from fastsession import store as store_module
from fastsession.factory import StoreFactory


def slots(store):
    """Every slot of ``store`` that is set, by name (a class's own slots and its bases')."""
    found = {}
    for cls in type(store).__mro__:
        names = cls.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            if hasattr(store, name):
                found[name] = getattr(store, name)
    return found


OPTIONS = [{}, {"session_cookie_name": "sid", "max_size": 4096, "max_lifetime": 3600.0, "timeout": 2.5}]


@pytest.mark.parametrize("options", OPTIONS)
def test_a_factory_store_is_the_constructors_in_every_slot_on_every_face(face, options):
    store_class, where, options = face.constructor(**options)
    made = StoreFactory(store_class, where, **options)
    assert made.template is not None  # (copied, not constructed)
    trans = Transaction()
    by_factory, by_make, by_constructor = made(trans), made.make(trans), store_class(trans, where, **options)
    assert type(by_factory) is store_class and type(by_make) is store_class
    assert slots(by_factory) == slots(by_constructor) == slots(by_make)
    assert by_factory.trans is trans and by_factory.backend is by_constructor.backend
    for store in (by_factory, by_make, by_constructor):
        face.run(store.rollback())


def test_factory_stores_serve_requests_as_constructed_ones_do(face):
    store_class, where, options = face.constructor()
    made = StoreFactory(store_class, where, **options)
    first = face.store(make=made)
    first.get_session(1)["cart"] = [1, 2]
    first.close()
    session_id = first.trans.cookies["SID"]
    second = face.store(session_id, make=made)
    second.get_session(0)["cart"].append(3)
    second.close()
    assert face.read(session_id) == {"cart": [1, 2, 3]}  # read back by a constructed store
    third, fourth = face.store(session_id, make=made), face.store(make=made)
    assert third.get_session(0) == {"cart": [1, 2, 3]} and fourth.get_session(0) is None  # nothing shared
    third.rollback()
    fourth.rollback()


def test_a_bad_option_is_refused_when_the_factory_is_made(session_dir):
    with pytest.raises(ValueError, match="locking"):
        StoreFactory(fastsession.SessionStore, session_dir, locking="sometimes")
    with pytest.raises(ValueError, match="max_size"):
        StoreFactory(fastsession.SessionStore, session_dir, max_size=-1)


def test_a_subclass_with_a_constructor_of_its_own_is_constructed_for_each_store(session_dir):
    class Audited(fastsession.SessionStore):
        __slots__ = ("seen",)

        def __init__(self, trans, session_directory, **options):
            super().__init__(trans, session_directory, **options)
            self.seen = []  # per request: a copy would share it

    made = StoreFactory(Audited, session_dir)
    assert made.template is None
    first, second = made(Transaction()), made(Transaction())
    assert first.seen is not second.seen and type(first) is Audited


def test_a_plain_subclass_and_an_adapters_class_without_slots_are_copied(session_dir):
    class Plain(fastsession.SessionStore):
        __slots__ = ()

    class NoSlots(fastsession.SessionStore):  # (instances get a __dict__, empty as the constructor leaves it)
        pass

    for store_class in (Plain, NoSlots):
        made = StoreFactory(store_class, session_dir)
        assert made.template is not None
        store = made(Transaction())
        assert type(store) is store_class and slots(store) == slots(store_class(store.trans, session_dir))
        assert getattr(store, "__dict__", {}) == {}


def test_a_relative_directory_is_constructed_for_each_store_as_it_follows_chdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = StoreFactory(fastsession.SessionStore, "sessions")
    assert made.template is None
    store = made(Transaction())
    store.get_session(1)["n"] = 1
    store.close()
    assert len(list((tmp_path / "sessions").rglob("*"))) >= 2  # a shard folder and the session, under the cwd


def test_a_callable_that_is_not_a_class_is_called_for_each_store(session_dir):
    calls = []

    def make(trans, where, **options):
        calls.append(options)
        return fastsession.SessionStore(trans, where, **options)

    made = StoreFactory(make, session_dir, max_size=4096)
    made(Transaction())
    made(Transaction())
    assert calls == [{"max_size": 4096}, {"max_size": 4096}]


def test_a_factory_made_before_a_fork_makes_the_childs_stores_its_own(session_dir):
    """A store the child makes holds locks for the child: dropped unclosed there, its lock is released."""
    made = StoreFactory(fastsession.SessionStore, session_dir)
    with fastsession.SessionStore(Transaction(), session_dir) as first:
        first.get_session(1)["n"] = 1
    cookie = {"SID": first.trans.cookies["SID"]}

    def child(write):
        store = made(Transaction(cookie))
        assert store._born == store_module._generation  # the child's, not the parent's
        store.get_session(0)["n"] = 2
        del store  # dropped unclosed in the child: rolled back there, its lock let go
        with fastsession.SessionStore(Transaction(cookie), session_dir, timeout=0) as check:
            assert check.get_session(0) == {"n": 1}  # (a lock left held would time out at once)
        os.write(write, b"ok")

    pid, read = fork_child(child)
    assert os.read(read, 2) == b"ok"
    os.close(read)
    wait_ok(pid)


# -- the copied kernel, both twins ---------------------------------------------------------------


class Base:
    __slots__ = ("a", "b")


class Child(Base):
    __slots__ = ("c",)


class Other:
    __slots__ = ("a",)


class OwnNew(Base):
    __slots__ = ()

    def __new__(cls):
        return super().__new__(cls)


def members(cls, *names):
    return tuple(getattr(cls, name) for name in names)


@pytest.mark.parametrize("kind", TWINS)
def test_copied_makes_a_new_object_with_the_templates_values(kind):
    copied = _kernels.twin(kind).copied
    template = Child()
    template.a, template.b, template.c = [1], "two", None
    made = copied(template, members(Child, "a", "c"))
    assert type(made) is Child and made is not template
    assert made.a is template.a and made.c is None and not hasattr(made, "b")  # only the members asked for


@pytest.mark.parametrize("kind", TWINS)
def test_copied_refuses_what_is_not_a_slot_of_the_templates_class_and_makes_nothing(kind):
    copied = _kernels.twin(kind).copied
    template = Child()
    template.a = template.b = template.c = 0
    with pytest.raises(TypeError, match="not a slot"):
        copied(template, (Child.a, property(lambda self: 0)))
    with pytest.raises(TypeError, match="not a slot"):
        copied(template, (Other.a,))  # another class's slot: another layout
    with pytest.raises(AttributeError, match="'c'"):
        unset = Child()
        unset.a = 0
        copied(unset, members(Child, "a", "c"))
    own = OwnNew()
    own.a = 0
    with pytest.raises(TypeError, match="object.__new__"):
        copied(own, members(Base, "a"))


def test_the_compiled_copy_keeps_every_reference_counted():
    import sys

    copied = compiled_twin("request").copied
    value = object()
    template = Child()
    template.a, template.b, template.c = value, value, value
    before = sys.getrefcount(value)
    made = [copied(template, members(Child, "a", "b", "c")) for _ in range(10)]
    assert sys.getrefcount(value) == before + 30
    del made
    assert sys.getrefcount(value) == before


@pytest.mark.parametrize("kind", TWINS)
def test_store_like_gives_the_copy_its_transaction_and_this_processs_fork_mark(session_dir, kind, monkeypatch):
    """The fork mark is read when the store is made, not copied from the template (made before a fork, perhaps)."""
    store_like = _kernels.twin(kind).store_like
    made = StoreFactory(fastsession.SessionStore, session_dir)
    trans = Transaction()
    monkeypatch.setattr(store_module, "_generation", store_module._generation + 3)
    store = store_like(made.template, made.members, trans)
    assert store.trans is trans and store._born == store_module._generation != made.template._born
    assert store.backend is made.template.backend and store._session is None
    with pytest.raises(TypeError, match="StoreCore"):
        store_like(Child(), (), trans)  # (the slots it sets are a store's)


def test_a_factorys_make_and_call_make_the_same_store(session_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = StoreFactory(fastsession.SessionStore, session_dir)
    constructed = StoreFactory(fastsession.SessionStore, "sessions")  # (relative: constructed each time)
    for factory in (made, constructed):
        trans = Transaction()
        by_make, by_call = slots(factory.make(trans)), slots(factory(trans))
        if factory is constructed:  # (a relative directory's backend is made with each store)
            assert by_make.pop("backend").directory == by_call.pop("backend").directory
        assert by_make == by_call and by_make["trans"] is trans
