//go:build !unix

package csvscan

import "time"

func cpuTime() time.Duration { return 0 }
