"""The core's driver (``run``): both twins carry out a routine's calls alike, errors included."""

import pytest
from conftest import compiled_twin
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsession import _drive_py


class Backend:
    """Records the calls it gets; ``fail`` raises what it is given."""

    def __init__(self):
        self.calls = []

    def add(self, a, b):
        self.calls.append(("add", a, b))
        return a + b

    def none(self):
        self.calls.append(("none",))

    def fail(self, error):
        self.calls.append(("fail", type(error).__name__))
        raise error


def two_calls():
    x = yield "add", 1, 2
    y = yield "add", x, 10
    return x, y


def no_call():
    return "given"
    yield  # a generator that makes no call


def handles_its_error():
    try:
        yield "fail", KeyError("k")
    except KeyError as exc:
        got = yield "add", str(exc), "!"
        return got
    return "not reached"


def lets_it_through():
    yield ("none",)
    yield "fail", OSError(5, "io")
    return "not reached"


def raises_after_a_call():
    yield ("none",)
    raise LookupError("the routine's own")


def returns_from_its_handler():
    try:
        yield "fail", ValueError("v")
    except ValueError:
        return "recovered"


def yields(value):
    yield value


def drivers():
    return [_drive_py.run, compiled_twin("drive").run]


def outcome(run, routine, *args):
    backend = Backend()
    try:
        result = ("returned", run(backend, routine(*args)))
    except Exception as exc:
        result = ("raised", type(exc), str(exc))
    return result, backend.calls


@pytest.mark.parametrize(
    "routine",
    [two_calls, no_call, handles_its_error, lets_it_through, raises_after_a_call, returns_from_its_handler],
)
def test_both_twins_drive_a_routine_alike(routine):
    pure, compiled = (outcome(run, routine) for run in drivers())
    assert pure == compiled
    if routine is two_calls:
        assert pure == (("returned", (3, 13)), [("add", 1, 2), ("add", 3, 10)])
    if routine is lets_it_through:  # the backend's error, thrown in and not handled, reaches the caller
        assert pure[0][:2] == ("raised", OSError)


@pytest.mark.parametrize("bad", [None, (), "open", 3])
def test_a_routine_that_yields_no_call_is_an_error_not_a_crash(bad):
    for run in drivers():
        with pytest.raises((TypeError, AttributeError, IndexError)):
            run(Backend(), yields(bad))


# What a routine might yield, well-formed or not: every twin must do the same with each.
YIELDS = [
    ("add", 1, 2),
    ["add", 3, 4],
    ("none",),
    ["none"],
    (),
    [],
    None,
    3,
    "add",
    "none",
    ("add", 1),
    ("nope",),
    (7,),
    [None, 1],
    ("fail", KeyError("k")),
    ["fail", OSError(5, "io")],
    b"ab",
    {"add": 1},
]


def plan_routine(plan):
    """Yields each item of ``plan``, catching what the driver throws in when the plan says so; a record."""
    seen = []
    for value, catch in plan:
        try:
            seen.append(("sent", repr((yield value))))
        except Exception as exc:
            if not catch:
                raise
            seen.append(("thrown", type(exc).__name__))
    return seen


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(range(len(YIELDS))), st.booleans()), max_size=8))
def test_the_twins_agree_on_any_plan_of_yields_well_formed_or_not(plan):
    """Issue 24 item 18: a malformed yield is thrown into the routine by both twins, the same error."""

    def routine():
        return plan_routine([(YIELDS[index], catch) for index, catch in plan])

    results = [outcome(run, routine) for run in drivers()]
    assert results[0] == results[1]


class Shrinking(Backend):
    """Empties the list it was called from, as a method could (items freed while the driver still read them)."""

    def __init__(self, call):
        Backend.__init__(self)
        self.call = call

    def take(self, a, b):
        self.call.clear()
        self.call.extend([object()] * 64)  # reallocated: the old item pointers are stale
        return (a, b)


def test_a_list_the_called_method_mutates_is_read_safely_by_both():
    for run in drivers():
        call = ["take", "x" * 50, "y" * 50]
        backend = Shrinking(call)

        def routine(call=call):
            got = yield call
            return got

        assert run(backend, routine()) == ("x" * 50, "y" * 50)


def test_a_call_given_as_a_list_is_made_by_both():
    for run in drivers():
        backend = Backend()
        assert run(backend, yields(["add", 1, 2])) is None
        assert backend.calls == [("add", 1, 2)]


def test_the_driver_in_use_is_the_chosen_twin():
    import fastsession
    from fastsession import store

    assert store.run is fastsession._kernels.ACTIVE.run
    assert store.run.__module__ == ("fastsession._drive_c" if fastsession.EXTENSIONS else "fastsession._drive_py")
