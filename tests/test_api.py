"""The public surface: exports, submodules, flag constants, exception hierarchy."""
import importlib
import queue

import pytest

import pyshm
import pyshm.mempool
import pyshm.ring
import pyshm.shm

TOP_LEVEL = [
    "ShareMem",
    "Mempool",
    "Ring",
    "init_shm",
    "get_shm",
    "PyshmError",
    "ShareMemError",
    "MempoolError",
    "RingError",
    "EmptyError",
    "FullError",
    "CorruptionError",
    "MEMPOOL_F_SP_PUT",
    "MEMPOOL_F_SC_GET",
    "RING_F_SP_ENQ",
    "RING_F_SC_DEQ",
]

SUBMODULES = {
    "pyshm.shm": ["ShareMem", "ShareMemError", "PyshmError", "CorruptionError", "init_shm", "get_shm"],
    "pyshm.mempool": [
        "Mempool",
        "MEMPOOL_F_SP_PUT",
        "MEMPOOL_F_SC_GET",
        "MempoolError",
        "EmptyError",
        "FullError",
        "CorruptionError",
        "PyshmError",
    ],
    "pyshm.ring": [
        "Ring",
        "RING_F_SP_ENQ",
        "RING_F_SC_DEQ",
        "RingError",
        "EmptyError",
        "FullError",
        "CorruptionError",
        "PyshmError",
    ],
}


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_export(name):
    assert hasattr(pyshm, name)
    assert name in pyshm.__all__


def test_star_import():
    ns = {}
    exec("from pyshm import *", ns)
    for name in TOP_LEVEL:
        assert name in ns
        assert ns[name] is getattr(pyshm, name)


@pytest.mark.parametrize("module,name", [(m, n) for m, names in SUBMODULES.items() for n in names])
def test_submodule_exports_same_object(module, name):
    mod = importlib.import_module(module)
    assert getattr(mod, name) is getattr(pyshm, name)


def test_submodules_are_attributes_of_package():
    assert pyshm.shm is importlib.import_module("pyshm.shm")
    assert pyshm.mempool is importlib.import_module("pyshm.mempool")
    assert pyshm.ring is importlib.import_module("pyshm.ring")


def test_from_imports_used_by_old_code():
    from pyshm import ShareMem, mempool, ring  # noqa: F401

    assert mempool.Mempool is pyshm.Mempool
    assert ring.Ring is pyshm.Ring
    assert mempool.EmptyError is pyshm.EmptyError
    assert ring.FullError is pyshm.FullError
    assert ring.EmptyError is mempool.EmptyError
    assert mempool.FullError is ring.FullError


def test_classes_are_types():
    for cls in (pyshm.ShareMem, pyshm.Mempool, pyshm.Ring):
        assert isinstance(cls, type)


def test_class_names():
    assert pyshm.ShareMem.__name__ == "ShareMem"
    assert pyshm.Mempool.__name__ == "Mempool"
    assert pyshm.Ring.__name__ == "Ring"


def test_functions_callable():
    assert callable(pyshm.init_shm)
    assert callable(pyshm.get_shm)
    assert pyshm.init_shm is pyshm.shm.init_shm
    assert pyshm.get_shm is pyshm.shm.get_shm


# --- constants ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MEMPOOL_F_SP_PUT", "MEMPOOL_F_SC_GET", "RING_F_SP_ENQ", "RING_F_SC_DEQ"])
def test_flag_is_positive_power_of_two_int(name):
    value = getattr(pyshm, name)
    assert type(value) is int
    assert value > 0
    assert value & (value - 1) == 0


def test_flags_distinct_within_kind():
    assert pyshm.MEMPOOL_F_SP_PUT != pyshm.MEMPOOL_F_SC_GET
    assert pyshm.RING_F_SP_ENQ != pyshm.RING_F_SC_DEQ


def test_flags_accepted_by_constructors():
    with pyshm.ShareMem(1 << 16) as shm:
        pool = pyshm.Mempool(2, 8, pyshm.MEMPOOL_F_SP_PUT | pyshm.MEMPOOL_F_SC_GET, shm=shm)
        ring = pyshm.Ring(2, pyshm.RING_F_SP_ENQ | pyshm.RING_F_SC_DEQ, shm=shm)
        assert pool.flags == pyshm.MEMPOOL_F_SP_PUT | pyshm.MEMPOOL_F_SC_GET
        assert ring.flags == pyshm.RING_F_SP_ENQ | pyshm.RING_F_SC_DEQ
        pool.cleanup()
        ring.cleanup()


# --- exceptions --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ShareMemError", "MempoolError", "RingError", "EmptyError", "FullError",
                                  "CorruptionError"])
def test_every_error_is_a_pyshm_error(name):
    cls = getattr(pyshm, name)
    assert issubclass(cls, pyshm.PyshmError)
    assert issubclass(cls, Exception)


def test_pyshm_error_is_exception():
    assert issubclass(pyshm.PyshmError, Exception)
    assert not issubclass(pyshm.PyshmError, (ValueError, TypeError, BufferError))


def test_empty_error_bases():
    e = pyshm.EmptyError
    assert issubclass(e, pyshm.MempoolError)
    assert issubclass(e, pyshm.RingError)
    assert issubclass(e, queue.Empty)
    assert not issubclass(e, queue.Full)


def test_full_error_bases():
    f = pyshm.FullError
    assert issubclass(f, pyshm.MempoolError)
    assert issubclass(f, pyshm.RingError)
    assert issubclass(f, queue.Full)
    assert not issubclass(f, queue.Empty)


def test_distinct_exceptions():
    names = ["PyshmError", "ShareMemError", "MempoolError", "RingError", "EmptyError", "FullError",
             "CorruptionError"]
    classes = [getattr(pyshm, n) for n in names]
    assert len(set(classes)) == len(classes)
    assert not issubclass(pyshm.ShareMemError, (pyshm.MempoolError, pyshm.RingError))
    assert not issubclass(pyshm.CorruptionError, (pyshm.MempoolError, pyshm.RingError, pyshm.ShareMemError))
    assert not issubclass(pyshm.EmptyError, pyshm.FullError)
    assert not issubclass(pyshm.FullError, pyshm.EmptyError)


def test_exceptions_raisable_and_catchable():
    with pytest.raises(queue.Empty):
        raise pyshm.EmptyError("x")
    with pytest.raises(pyshm.MempoolError):
        raise pyshm.EmptyError("x")
    with pytest.raises(pyshm.RingError):
        raise pyshm.FullError("x")
    with pytest.raises(queue.Full):
        raise pyshm.FullError("x")


def test_raised_errors_have_the_documented_classes():
    with pyshm.ShareMem(1 << 16) as shm:
        pool = pyshm.Mempool(1, 4, shm=shm)
        ring = pyshm.Ring(2, shm=shm)
        buf = pool.get()
        try:
            pool.get()
        except queue.Empty as e:
            assert type(e) is pyshm.EmptyError
        else:
            pytest.fail("get() on an empty pool did not raise")
        try:
            ring.dequeue()
        except pyshm.RingError as e:
            assert type(e) is pyshm.EmptyError
        else:
            pytest.fail("dequeue() on an empty ring did not raise")
        pool.put(buf)

