//go:build !unix

package activation

import "errors"

func prepare(fd int) error { return errors.New("socket activation needs a Unix system") }
