// Package state owns the master's durable state: the job records, the
// slave records (drains, quarantines) and the job id sequence, kept as a
// state machine replicated by hashicorp/raft and stored in a data
// directory (raft-boltdb for the log and stable store, raft's file
// snapshot store for snapshots).
//
// # What is durable and what is not
//
// A [Job] is the replicated half of a job: its id, owner, submit metadata,
// (sealed) payload, state, attempt, slave, times, result and output. The
// flight of a job (sessions, budget charges, file streams, a pending wrap
// request) belongs to the leader in memory and is no business of this
// package; neither are sessions nor load reports.
//
// # Determinism
//
// [Machine.Apply] is a pure function of the state and the [Command]: ids
// come from the sequence in the state, attempts are checked against the
// command's, and every time is the one the proposer stamped into the
// command (Command.Now). Two machines fed the same log hold the same state
// and write byte-identical snapshots (TestApplyDeterministic).
//
// # Records are immutable
//
// Apply never changes a [Job] in place: it copies the record, changes the
// copy and swaps the pointer. A snapshot therefore only copies the table
// of pointers under the lock and encodes outside it (the auth registry's
// copy-on-write, one level down), and readers get records they may keep
// but must not modify.
//
// # Data directory
//
// [Open] refuses, with an error that names the directory and what is
// wrong, a directory another master holds (flock on LOCK), one that
// belongs to another cluster (the CA fingerprint in its CLUSTER file), a
// corrupt or truncated store or snapshot, a log that no snapshot covers,
// and a disk with less than [Config.MinFree] bytes available. It never
// resets or repairs anything by itself.
//
// # Writes
//
// One goroutine (the proposer) writes the proposed commands in order,
// one log entry (one bbolt commit: two fdatasyncs) at a time, each entry holding every command
// proposed while the previous one was written (group commit). Commands
// proposed with [Store.ProposeLazy] cause no write of their own: they
// wait for the next entry, at most [Config.LazyDelay]. Close writes what
// is pending and then a [KindStop] mark; Open of a state without that
// mark (a crash) writes [KindRestart], which moves every queued job to
// its next attempt, because a lost lazy Assign may have left a slave
// running the job under the attempt the log still has queued.
//
// # Concurrency
//
// A [Store] and a [Machine] are safe for concurrent use. Lock order: the
// Machine's lock is a leaf; nothing is called while holding it.
package state
