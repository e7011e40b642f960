package system_test

import "testing"

func TestZZNothing(t *testing.T) {}
