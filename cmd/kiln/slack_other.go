//go:build !linux

package main

import "time"

// withTimerSlack does nothing outside Linux (see slack_linux.go).
func withTimerSlack(d time.Duration) (restore func()) { return func() {} }
