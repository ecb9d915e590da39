// Command pause is the sandbox ("pause") container of the end-to-end cluster: it holds
// the pod's namespaces, reaps the zombies it inherits as PID 1, and exits 0 on SIGTERM
// or SIGINT. It is built static and packed into an OCI image by package image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
