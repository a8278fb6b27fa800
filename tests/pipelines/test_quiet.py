"""The offline job's stderr filter: Ray's actor-argument `E` line leaves, every other byte passes, in order."""

import os

from pipelines.quiet import ACTOR_ARGUMENT_NOTICE, without_actor_argument_notice

NOTICE = b"[2026-12-05 07:01:13,862 E 7326 7326] core_worker.cc:2465: Actor with class name: 'MapWorker' " + (
    ACTOR_ARGUMENT_NOTICE + b". See https://github.com/ray-project/ray/issues/53727 for more details.\n"
)


def test_only_the_actor_argument_notice_is_dropped_from_file_descriptor_2(capfd):
    with without_actor_argument_notice():
        os.write(2, b"before\n" + NOTICE[:40])  # a line may arrive in pieces
        os.write(2, NOTICE[40:] + b"[E core_worker] a real failure\n")
        os.write(2, b"no newline at the end")
    os.write(2, b"\nafter: " + NOTICE)  # outside the block nothing is filtered
    err = capfd.readouterr().err
    assert err == "before\n[E core_worker] a real failure\nno newline at the end\nafter: " + NOTICE.decode()


def test_stderr_is_restored_when_the_block_raises(capfd):
    try:
        with without_actor_argument_notice():
            raise KeyError("boom")
    except KeyError:
        pass
    os.write(2, NOTICE)
    assert capfd.readouterr().err == NOTICE.decode()
