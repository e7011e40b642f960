package localenvtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestSweepStale(t *testing.T) {
	// A pid that certainly belonged to a process that has exited.
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := cmd.Process.Pid

	mkRoot := func(owner string) string {
		t.Helper()
		dir, err := os.MkdirTemp(tmpDir, rootPrefix+"sweeptest-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if owner != "" {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Mkdir(filepath.Join(dir, "postgres"), 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	deadOwner := mkRoot(strconv.Itoa(deadPid))
	liveOwner := mkRoot(strconv.Itoa(os.Getpid()))
	newWithoutOwner := mkRoot("")
	oldWithoutOwner := mkRoot("")
	old := time.Now().Add(-2 * staleAfter)
	if err := os.Chtimes(oldWithoutOwner, old, old); err != nil {
		t.Fatal(err)
	}

	sweepStale()

	for dir, wantKept := range map[string]bool{
		deadOwner:       false,
		liveOwner:       true,
		newWithoutOwner: true,
		oldWithoutOwner: false,
	} {
		_, err := os.Stat(dir)
		if kept := err == nil; kept != wantKept {
			t.Errorf("%s: kept=%v, want %v", filepath.Base(dir), kept, wantKept)
		}
	}
}
