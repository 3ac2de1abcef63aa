package main

import (
	"bufio"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

func termios(f *os.File) (syscall.Termios, bool) {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return t, errno == 0
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, ok := termios(f)
	return ok
}

// readNoEcho reads a line from the terminal f without showing it.
func readNoEcho(f *os.File) (string, error) {
	old, _ := termios(f)
	t := old
	t.Lflag &^= syscall.ECHO
	t.Lflag |= syscall.ICANON
	syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCSETS, uintptr(unsafe.Pointer(&t)))
	defer syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCSETS, uintptr(unsafe.Pointer(&old)))
	line, err := bufio.NewReader(f).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}
