package conformance

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel stop the emulator if the test process dies without
// running TestMain's cleanup (a panic in a test, a timeout, a kill).
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
