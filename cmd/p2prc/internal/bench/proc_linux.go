package bench

import (
	"os/exec"
	"syscall"
)

// setParentDeath asks the kernel to send the child SIGTERM if the bench
// dies without stopping it (killed, crashed), so no relay or node outlives
// a run. Go never ends the thread that started a child unless that thread
// was locked, which the bench never does.
func setParentDeath(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
