package prometheus

import (
	"testing"

	"github.com/switchyard-gw/switchyard/internal/leakcheck"
	"github.com/switchyard-gw/switchyard/internal/testcluster"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, testcluster.RemoveBinary, leakcheck.Netpoll...)
}
