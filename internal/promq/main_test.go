package promq

import (
	"testing"

	"github.com/switchyard-gw/switchyard/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, nil)
}
