//go:build !linux

package main

import (
	"errors"
	"os"
)

// isTerminal: password prompts are for Linux; elsewhere use --password-stdin
// or let the hub make one up.
func isTerminal(*os.File) bool { return false }

func readNoEcho(*os.File) (string, error) { return "", errors.New("no password prompt on this system") }
