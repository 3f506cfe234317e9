//go:build !benchprofile

package main

import (
	"context"
	"errors"
)

// profileBuilt: this build cannot profile; profile.go (-tags benchprofile) can.
const profileBuilt = false

func (b *bench) profile(context.Context) error {
	return errors.New("--cpuprofile needs a build with -tags benchprofile")
}
