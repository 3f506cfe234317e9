package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// These helpers start servers as child processes; they take no testing.TB,
// so that cmd/backupbench starts its versitygw and backupd the way the tests do.

// FreePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the caller binds it: see OnFreePort.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// OnFreePort calls start with a free loopback port until it succeeds, three
// times at most: the port may be taken between the probe and the child's bind.
// It returns start's last error.
func OnFreePort(start func(port string) error) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var port string
		if port, err = FreePort(); err != nil {
			return err
		}
		if err = start(port); err == nil {
			return nil
		}
	}
	return err
}

// RandomHex returns n random bytes, hex-encoded (unique names and keys).
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// MinimalEnv is the environment of child processes: PATH, HOME, TMPDIR and
// GODEBUG of the caller, plus extra. The caller's other variables are none of
// the child's business (versitygw reads many VGW_*/ROOT_* variables, backupd
// every BACKUPD_*).
func MinimalEnv(extra ...string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GODEBUG", "GOGC", "GOMEMLIMIT"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, extra...)
}

// IsExecutable reports whether p is a regular file someone may execute.
func IsExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// VersityBinary finds versitygw: $VERSITYGW_BIN, then root/.bin/versitygw,
// then versitygw on PATH. The error says how to build it.
func VersityBinary(root string) (string, error) {
	if p := os.Getenv("VERSITYGW_BIN"); p != "" {
		if IsExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("VERSITYGW_BIN=%s is not an executable file", p)
	}
	if p := filepath.Join(root, ".bin", "versitygw"); IsExecutable(p) {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("versitygw not found ($VERSITYGW_BIN, %s/.bin/versitygw, PATH); build it with: GOBIN=%s/.bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0", root, root)
}

// StartLocked starts cmd from a goroutine locked to its OS thread that stays alive until the
// child exits, and then sends cmd.Wait's error on exited: a Pdeathsig in cmd.SysProcAttr fires
// when the forking *thread* exits, and Go may otherwise retire that thread while the child runs.
func StartLocked(cmd *exec.Cmd, exited chan<- error) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is discarded after the child is gone
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	return <-started
}
