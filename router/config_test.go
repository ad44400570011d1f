package router

import (
	"errors"
	"math"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero value", Config{}, true},
		{"explicit defaults", Config{DefaultPartitionCount, DefaultReplicationFactor, DefaultLoad, XXHash{}}, true},
		{"one partition", Config{PartitionCount: 1}, true},
		{"negative partitions", Config{PartitionCount: -1}, false},
		{"too many partitions", Config{PartitionCount: MaxPartitionCount + 1}, false},
		{"rf 1", Config{ReplicationFactor: 1}, false},
		{"rf 2", Config{ReplicationFactor: 2}, true},
		{"negative rf", Config{ReplicationFactor: -20}, false},
		{"rf too large", Config{ReplicationFactor: MaxReplicationFactor + 1}, false},
		{"load 1", Config{Load: 1}, false},
		{"load below 1", Config{Load: 0.5}, false},
		{"negative load", Config{Load: -1.25}, false},
		{"load NaN", Config{Load: math.NaN()}, false},
		{"load +Inf", Config{Load: math.Inf(1)}, false},
		{"load 1.01", Config{Load: 1.01}, true},
		{"load huge (unbounded)", Config{Load: 1e9}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, not ErrInvalidConfig", err)
			}
			if _, err := NewRing(tt.cfg, testShards("s", 1)); (err == nil) != tt.ok {
				t.Fatalf("NewRing() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	want := Config{DefaultPartitionCount, DefaultReplicationFactor, DefaultLoad, XXHash{}}
	if got != want {
		t.Fatalf("withDefaults() = %+v, want %+v", got, want)
	}
	if r := mustRing(t, Config{}, testShards("s", 2)); r.Config() != want {
		t.Fatalf("Ring.Config() = %+v, want %+v", r.Config(), want)
	}
}

func TestCircuitConfigValidate(t *testing.T) {
	if _, err := NewCircuits(CircuitConfig{CoolDown: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative cool-down: %v", err)
	}
	if _, err := NewCircuits(CircuitConfig{}); err != nil {
		t.Fatalf("zero config: %v", err)
	}
}
