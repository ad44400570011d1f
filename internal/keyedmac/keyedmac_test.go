package keyedmac

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
)

func reference(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// The pooled MAC gives what a fresh hmac.New gives, however many times it
// is reused, for keys shorter and longer than SHA-256's block.
func TestMatchesHMAC(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("k"), make([]byte, 64), make([]byte, 200)} {
		k := New(key)
		for i := range 50 {
			a, b := fmt.Sprintf("part-%d", i), string(make([]byte, i*37))
			m := k.Get()
			m.WriteString(a)
			m.Write([]byte(b))
			got := m.Sum([]byte("prefix"))
			want := append([]byte("prefix"), reference(key, a, b)...)
			if !hmac.Equal(got, want) {
				t.Fatalf("key %d bytes, message %d: got %x, want %x", len(key), i, got, want)
			}
		}
	}
}

// Keys do not mix: a MAC goes back to the pool of the Key it came from.
func TestKeysApart(t *testing.T) {
	k1, k2 := New([]byte("one")), New([]byte("two"))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, key := k1, []byte("one")
			if g%2 == 1 {
				k, key = k2, []byte("two")
			}
			for i := range 200 {
				msg := fmt.Sprint(g, i)
				m := k.Get()
				m.WriteString(msg)
				if got := m.Sum(nil); !hmac.Equal(got, reference(key, msg)) {
					t.Errorf("goroutine %d, message %d: wrong MAC", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// The key is copied: changing the caller's slice afterwards changes nothing.
func TestKeyCopied(t *testing.T) {
	key := []byte("secret")
	k := New(key)
	key[0] = 'X'
	m := k.Get()
	m.WriteString("msg")
	if !hmac.Equal(m.Sum(nil), reference([]byte("secret"), "msg")) {
		t.Fatal("the Key follows its caller's slice")
	}
}

func BenchmarkKey(b *testing.B) {
	k := New([]byte("key"))
	body := make([]byte, 25)
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		m := k.Get()
		m.WriteString("switchyard-resume")
		m.Write(body)
		m.WriteString("device-1")
		dst = m.Sum(dst[:0])
	}
}

func BenchmarkHMACNew(b *testing.B) {
	body := make([]byte, 25)
	b.ReportAllocs()
	for b.Loop() {
		m := hmac.New(sha256.New, []byte("key"))
		m.Write([]byte("switchyard-resume"))
		m.Write(body)
		m.Write([]byte("device-1"))
		_ = m.Sum(nil)
	}
}
