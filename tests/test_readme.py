"""The original README example, as written there (imports added), run as a test.

Two additions around it, both needed to keep the pytest session clean and meaningful:
the fork child ends with os._exit (0 after the loop, 1 with a traceback on an exception)
instead of falling through into the rest of the session, and the parent asserts the
child's exit status.
"""
import os
import struct
import traceback


def test_readme_example():
    from pyshm import ShareMem
    test_shm = ShareMem(64*1024*1024) # 64M
    from pyshm import mempool
    count = 4
    mp = mempool.Mempool(count, 4, shm=test_shm)
    pid = os.fork()
    if pid == 0:
        try:
            for i in range(count):
                buf = mp.get()
                struct.pack_into("=i", buf, 0, i)
                mp.put(buf)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    else:
        cid, status = os.wait()
        assert pid == cid
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status:#x}"
        for i in range(count):
            buf = mp.get()
            v, = struct.unpack_from("=i", buf)
            assert v == i
        mp.cleanup()

    # (not in the README) the region is released once the last block view is gone
    assert test_shm.closed is False
    del buf
    test_shm.cleanup()
    assert test_shm.closed is True
