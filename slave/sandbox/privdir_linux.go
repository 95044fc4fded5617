package sandbox

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// NewPrivateDir makes a [PrivateDir] of at most size bytes, mode 0700. It
// needs CAP_SYS_ADMIN (root) and the new mount API (Linux 5.2).
func NewPrivateDir(size int64) (*PrivateDir, error) {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("sandbox: private dir: fsopen tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	for _, o := range [][2]string{{"size", strconv.FormatInt(size, 10)}, {"mode", "700"}} {
		if err := unix.FsconfigSetString(fsfd, o[0], o[1]); err != nil {
			return nil, fmt.Errorf("sandbox: private dir: tmpfs %s=%s: %w", o[0], o[1], err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("sandbox: private dir: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return nil, fmt.Errorf("sandbox: private dir: fsmount: %w", err)
	}
	return &PrivateDir{mnt: os.NewFile(uintptr(mfd), "private-dir"), path: "/proc/self/fd/" + strconv.Itoa(mfd)}, nil
}
