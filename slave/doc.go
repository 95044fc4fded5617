// Package slave is the Kiln worker: it detects the machine's toolchains,
// reports its load, and compiles and runs the jobs the master assigns.
//
// # Pieces
//
//   - [Detect] and [DetectHost] find gcc, g++, javac/java and python3 with
//     their versions, and the OS, kernel, architecture, CPUs and memory.
//   - [Executor] runs one [Job]: a fresh directory on a private tmpfs
//     (or under its work root), the compile step (or a [Cache] hit), then
//     the run step, both through a [sandbox.Runner]; only the compile
//     step's artifacts come back from the sandbox; output is streamed as
//     produced and the outcome becomes a [wire.Result].
//   - [Cache] keeps compile artifacts on disk, sealed under a per-process
//     key, keyed by [CacheKey] per client (owner), bounded by size with
//     least-recently-used eviction.
//   - [LoadSampler] turns CPU, load average and memory into [wire.Load].
//   - [Slave] is the network agent: [Slave.Run] connects to the master,
//     registers, reports load, runs up to Config.Slots jobs at once and
//     reconnects with capped exponential backoff until its context ends or
//     the master refuses its key. Jobs outlive a lost session for a grace
//     period, their output kept for replay within Config.MaxHeldBytes and
//     a share per client key (Config.MaxHeldPerOwner).
//
// # Bounds
//
// What all the jobs of a slave can make it hold is bounded in one place,
// bounds.go: the private tmpfs of the job directories, JobDirBytes per
// slot ([DefaultJobDirBytes], at most [MaxWorkBytes]), and the output kept
// for replay ([DefaultMaxHeldBytes], [DefaultMaxHeldPerOwner]).
//
// The package imports transport (and its wire format), auth and certs,
// never master or client.
package slave
