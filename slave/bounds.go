package slave

import (
	"cmp"
	"fmt"

	"kiln/slave/sandbox"
)

// Bounds of what all the jobs of one slave can make it hold at once, and
// their defaults (docs/security.md, "Bounds of one job on its slave"). The
// fields that set them are ExecConfig.Slots and ExecConfig.JobDirBytes (job
// directories) and Config.MaxHeldBytes and Config.MaxHeldPerOwner (output
// kept for replay).
const (
	// DefaultJobDirBytes is what one slot's job directories can hold at
	// most: a test batch keeps two (its program's and its checker's), each
	// holding a source (at most the master's 16 MiB) and what its compile
	// step copies back (at most the sandbox's /w, 256 MiB).
	DefaultJobDirBytes = 2 * (sandbox.DefaultWorkDirBytes + 16<<20)
	// MaxWorkBytes is the most the private tmpfs of the job directories
	// may be sized to (its pages are RAM, taken only as jobs write).
	MaxWorkBytes = 64 << 30
	// DefaultMaxHeldBytes bounds the output a slave keeps for replay over
	// all its jobs; a job whose output does not fit is not held.
	DefaultMaxHeldBytes = 256 << 20
	// DefaultMaxHeldPerOwner bounds the output kept for replay of the
	// jobs of one client key (Assign.Owner): past it that key's job is
	// not held, whatever room the others left.
	DefaultMaxHeldPerOwner = 32 << 20
)

// workBytes returns the size of the private tmpfs of the job directories
// for cfg: WorkBytes when set, else JobDirBytes for each slot, at most
// MaxWorkBytes.
func workBytes(cfg ExecConfig) (int64, error) {
	switch {
	case cfg.WorkBytes > MaxWorkBytes:
		return 0, fmt.Errorf("slave: job directories' tmpfs of %d bytes: at most %d", cfg.WorkBytes, int64(MaxWorkBytes))
	case cfg.Slots < 0 || cfg.JobDirBytes < 0:
		return 0, fmt.Errorf("slave: %d slots of %d bytes of job directories: want positive numbers", cfg.Slots, cfg.JobDirBytes)
	case cfg.WorkBytes != 0:
		return cfg.WorkBytes, nil
	}
	per := cmp.Or(cfg.JobDirBytes, DefaultJobDirBytes)
	slots := int64(max(cfg.Slots, 1))
	if per > MaxWorkBytes/slots {
		return MaxWorkBytes, nil
	}
	return slots * per, nil
}
