package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kiln/internal/testenv"
)

// A program the slave has just written starts, whatever the slave forks
// meanwhile: while another goroutine keeps starting children that wait in
// a new user namespace for their ID maps (as the pool's next init does),
// every file written by createFile and writeAt executes without ETXTBSY
// ("text file busy"), which a child holding a copy of the write
// descriptor caused (TestRunTestsCLI: "exec ./main: text file busy").
func TestWrittenProgramsNeverBusy(t *testing.T) {
	testenv.Root(t, "starts children in new user namespaces")
	prog, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var forks int
	wg.Add(1)
	go func() { // the forks of the rest of the slave
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			cmd := exec.Command("/bin/true")
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
				UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
				GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}}
			if err := cmd.Run(); err != nil {
				t.Errorf("fork: %v", err)
				return
			}
			forks++
		}
	}()
	busy, runs := 0, 0
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; i < 600 && time.Now().Before(deadline); i++ {
		name := "p" + strconv.Itoa(i)
		if i%2 == 0 {
			err = createFile(dfd, File{Name: name, Mode: 0o755, Data: prog}, -1, -1, nil)
		} else {
			err = writeAt(dfd, name, 0o755, func(f *os.File) error { _, err := f.Write(prog); return err })
		}
		if err != nil {
			t.Fatal(err)
		}
		err := exec.Command(dir + "/" + name).Run()
		if errors.Is(err, syscall.ETXTBSY) {
			busy++
		} else if err != nil {
			t.Fatalf("run %s: %v", name, err)
		}
		runs++
	}
	close(stop)
	wg.Wait()
	if busy > 0 || runs < 50 || forks < 50 {
		t.Fatalf("%d of %d programs failed with text file busy (%d forks meanwhile; want 0 busy, at least 50 runs and forks)", busy, runs, forks)
	}
	t.Logf("%d programs written and run, %d forks meanwhile, none busy", runs, forks)
}
