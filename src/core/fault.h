/*
 * fault.h - kill points, for the tests that kill a process in the middle of an operation.
 *
 * PYSHM_FAULT("name") marks a point between two writes to shared memory. In a normal
 * build it is nothing. In a build with -DPYSHM_FAULT_INJECTION (setup.py adds it when
 * the environment has PYSHM_FAULT_INJECTION=1; only the tests do that), a process whose
 * environment has PYSHM_FAULT=NAME:N kills itself with SIGKILL the N-th time it passes
 * the point NAME (N >= 1; NAME "*" counts every point). The variable is read at every
 * point, so a test can set it in a child after fork.
 *
 * The points (docs/design.md, "A process killed mid-operation", says what each leaves):
 *   queue.enq.claimed    queue positions claimed, nothing staged yet
 *   queue.enq.staged     one value staged (in a burst, before the next one)
 *   queue.enq.published  one value published (in a burst, before the next one)
 *   queue.deq.claimed    queue positions claimed, nothing taken yet
 *   queue.deq.released   one slot released (in a burst, before the next one)
 *   block.take.holder    the holder word written, the block's state not yet HELD
 *   block.take.done      one block's state moved to HELD
 *   block.give.done      one block's state moved from HELD to FREE or IN_RING (staged, not
 *                        yet published)
 *   repair.enq.filled    a repairer filled a dead producer's unstaged position
 *   repair.deq.reserved  a repairer reserved a dead consumer's unreleased position
 *   repair.entry.done    a repairer finished one dead member's entry, before freeing it
 */
#ifndef PYSHM_CORE_FAULT_H
#define PYSHM_CORE_FAULT_H

#ifdef PYSHM_FAULT_INJECTION
void pyshm_fault_point(const char *name);
#define PYSHM_FAULT(name) pyshm_fault_point(name)
#else
#define PYSHM_FAULT(name) ((void)0)
#endif

#endif
