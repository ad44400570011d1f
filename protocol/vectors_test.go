package protocol

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The protocol test vectors (docs/protocol.md, "Test vectors"): one data
// file that this test, the C client's tests (client/c/test) and any third
// implementation check themselves against. -update rewrites it from the
// encoders below.
var updateVectors = flag.Bool("update", false, "rewrite testdata/vectors.txt")

const vectorsFile = "testdata/vectors.txt"

// The known inputs of the vectors.
const (
	vectorSecret = "switchyard-test-vector-secret"
	vectorID     = "sensor-42"
	vectorExp    = 1800000000 // 2027-01-15T08:00:00Z
)

var vectorResume = []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}

// vector is one named byte string of the data file.
type vector struct {
	name string
	b    []byte
}

// orderedHello encodes a HELLO map with its keys in the vectors' order
// (v, id, token, resume, last, tags): EncodeHello writes a Go map, whose
// key order is not fixed.
func orderedHello(t testing.TB, token string, resume []byte, last uint32, tags [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	n := 2
	if token != "" {
		n++
	}
	if len(resume) > 0 {
		n += 2
	}
	if len(tags) > 0 {
		n++
	}
	must(t, e.EncodeMapLen(n))
	must(t, e.EncodeString("v"), e.EncodeInt(1), e.EncodeString("id"), e.EncodeString(vectorID))
	if token != "" {
		must(t, e.EncodeString("token"), e.EncodeString(token))
	}
	if len(resume) > 0 {
		must(t, e.EncodeString("resume"), e.EncodeBytes(resume), e.EncodeString("last"), e.EncodeUint(uint64(last)))
	}
	if len(tags) > 0 {
		must(t, e.EncodeString("tags"), e.EncodeMapLen(len(tags)))
		for _, kv := range tags {
			must(t, e.EncodeString(kv[0]), e.EncodeString(kv[1]))
		}
	}
	return buf.Bytes()
}

func must(t testing.TB, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	p, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// vectorToken is the token of hello_token: MakeToken for the known secret,
// id and expiry.
func vectorToken() string {
	return MakeToken([]byte(vectorSecret), vectorID, time.Unix(vectorExp, 0))
}

// makeVectors builds every vector from the encoders, in file order.
func makeVectors(t testing.TB) []vector {
	frame := func(ty Type, fl Flags, seq uint32, p []byte) []byte { return AppendFrame(nil, ty, fl, seq, p) }
	tooLarge := []byte{0x00, 0x01, 0x00, 0x07} // length 65543: payload 65537, one over max_frame
	return []vector{
		{"token", []byte(vectorToken())},
		{"hello", frame(TypeHello, 0, 0, orderedHello(t, "", nil, 0, nil))},
		{"hello_token", frame(TypeHello, 0, 0, orderedHello(t, vectorToken(), nil, 0, nil))},
		{"hello_resume", frame(TypeHello, 0, 0, orderedHello(t, "", vectorResume, 3, [][2]string{{"ver", "2"}}))},
		{"welcome", frame(TypeWelcome, 0, 0, marshal(t, &Welcome{Session: "s-0001", Resume: vectorResume, HB: 30, MaxFrame: DefaultMaxFrame, Node: "gw-1"}))},
		{"welcome_resumed", frame(TypeWelcome, 0, 0, marshal(t, &Welcome{Session: "s-0001", Resume: vectorResume, HB: 30, MaxFrame: DefaultMaxFrame, Node: "gw-2", Resumed: true, Last: 5}))},
		{"data_reliable", frame(TypeData, FlagAckRequested, 1, []byte("hello"))},
		{"data_best_effort", frame(TypeData, 0, 0, []byte("hi"))},
		{"ack", frame(TypeAck, 0, 7, nil)},
		{"ping", frame(TypePing, 0, 0, []byte("hb"))},
		{"pong", frame(TypePong, 0, 0, []byte("hb"))},
		{"error_401", AppendError(nil, CodeUnauthorized, "authentication failed")},
		{"error_429", AppendError(nil, CodeRateLimited, "rate limit exceeded")},
		{"goaway", frame(TypeGoAway, 0, 0, marshal(t, &GoAway{Reason: "draining", RetryMS: 5000, Redirect: []string{"10.0.0.2:7400", "10.0.0.3:7400"}}))},
		{"bad_length_400", []byte{0x00, 0x00, 0x00, 0x05, 0x10, 0x00, 0x00, 0x00, 0x00}},
		{"bad_type_400", frame(Type(0x05), 0, 0, nil)},
		{"bad_flags_400", frame(TypeData, 0x02, 0, []byte("x"))},
		{"too_large_413", tooLarge},
	}
}

// readVectors parses "name: hex" lines; '#' starts a comment line.
func readVectors(t testing.TB, text []byte) []vector {
	t.Helper()
	var out []vector
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hx, ok := strings.Cut(line, ": ")
		b, err := hex.DecodeString(hx)
		if !ok || err != nil {
			t.Fatalf("vectors: bad line %q", line)
		}
		out = append(out, vector{name, b})
	}
	return out
}

func formatVectors(vs []vector) []byte {
	var b bytes.Buffer
	b.WriteString("# Switchyard protocol v1 test vectors: name: hex. See docs/protocol.md, \"Test vectors\".\n")
	fmt.Fprintf(&b, "# secret %q, id %q, token expiry %d; token is the ASCII token.\n", vectorSecret, vectorID, vectorExp)
	for _, v := range vs {
		fmt.Fprintf(&b, "%s: %x\n", v.name, v.b)
	}
	return b.Bytes()
}

// TestVectors: the data file holds exactly what the encoders produce.
func TestVectors(t *testing.T) {
	want := makeVectors(t)
	if *updateVectors {
		must(t, os.WriteFile(vectorsFile, formatVectors(want), 0o644))
	}
	text, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	got := readVectors(t, text)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s differs from the encoders (go test ./protocol -run TestVectors -update):\n%s", vectorsFile, formatVectors(want))
	}
}

// TestVectorsDecode decodes every vector the way a gateway or device does
// and checks the fields the docs give for it.
func TestVectorsDecode(t *testing.T) {
	text, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	vs := map[string][]byte{}
	for _, v := range readVectors(t, text) {
		vs[v.name] = v.b
	}
	if err := VerifyToken([][]byte{[]byte(vectorSecret)}, vectorID, string(vs["token"]), time.Unix(vectorExp-1, 0)); err != nil {
		t.Errorf("token: %v", err)
	}
	dec := func(name string) Frame {
		t.Helper()
		f, n, err := Decode(vs[name], DefaultMaxFrame)
		if err != nil || n != len(vs[name]) {
			t.Fatalf("%s: %v (used %d of %d)", name, err, n, len(vs[name]))
		}
		return f
	}
	for name, want := range map[string]Hello{
		"hello":        {V: 1, ID: vectorID},
		"hello_token":  {V: 1, ID: vectorID, Token: vectorToken()},
		"hello_resume": {V: 1, ID: vectorID, Resume: vectorResume, Last: 3, Tags: map[string]string{"ver": "2"}},
	} {
		h, err := DecodeHello(dec(name).Payload)
		if err != nil || !reflect.DeepEqual(h, want) {
			t.Errorf("%s: %+v, %v; want %+v", name, h, err, want)
		}
	}
	var w Welcome
	must(t, Unmarshal(dec("welcome_resumed").Payload, &w))
	if w.Session != "s-0001" || !w.Resumed || w.Last != 5 || w.HB != 30 || w.MaxFrame != 65536 || w.Node != "gw-2" || !bytes.Equal(w.Resume, vectorResume) {
		t.Errorf("welcome_resumed: %+v", w)
	}
	if f := dec("data_reliable"); !f.Reliable() || f.Seq != 1 || string(f.Payload) != "hello" {
		t.Errorf("data_reliable: %+v", f)
	}
	if f := dec("ack"); f.Type != TypeAck || f.Seq != 7 || len(f.Payload) != 0 {
		t.Errorf("ack: %+v", f)
	}
	var g GoAway
	must(t, Unmarshal(dec("goaway").Payload, &g))
	if g.Reason != "draining" || g.RetryMS != 5000 || len(g.Redirect) != 2 || g.Redirect[1] != "10.0.0.3:7400" {
		t.Errorf("goaway: %+v", g)
	}
	var e ErrorMsg
	must(t, Unmarshal(dec("error_401").Payload, &e))
	if e.Code != 401 || e.Message != "authentication failed" {
		t.Errorf("error_401: %+v", e)
	}
	for name, want := range map[string]error{
		"bad_length_400": ErrShortLength, "bad_type_400": ErrUnknownType,
		"bad_flags_400": ErrReservedFlags, "too_large_413": ErrFrameTooLarge,
	} {
		if _, _, err := Decode(vs[name], DefaultMaxFrame); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
}

// TestVectorsSplitAtEveryByte is the split procedure of the docs: the
// frames of all good vectors back to back, cut at every offset into two
// reads, come out of the stream reader as the same frames.
func TestVectorsSplitAtEveryByte(t *testing.T) {
	text, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	var want []Frame
	for _, v := range readVectors(t, text) {
		if v.name == "token" || strings.HasSuffix(v.name, "_400") || strings.HasSuffix(v.name, "_413") {
			continue
		}
		f, _, err := Decode(v.b, DefaultMaxFrame)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		want = append(want, f)
		stream = append(stream, v.b...)
	}
	for cut := 0; cut <= len(stream); cut++ {
		r := NewFrameReader(&twoReads{stream[:cut], stream[cut:]}, DefaultMaxFrame)
		for i, w := range want {
			f, err := r.NextFrame()
			if err != nil || f.Type != w.Type || f.Flags != w.Flags || f.Seq != w.Seq || !bytes.Equal(f.Payload, w.Payload) {
				t.Fatalf("cut at %d, frame %d: %+v, %v; want %+v", cut, i, f, err, w)
			}
		}
	}
}

// twoReads returns a, then b, then EOF, one read each.
type twoReads struct{ a, b []byte }

func (r *twoReads) Read(p []byte) (int, error) {
	src := &r.a
	if len(r.a) == 0 {
		src = &r.b
	}
	if len(*src) == 0 {
		return 0, errEOF
	}
	n := copy(p, *src)
	*src = (*src)[n:]
	return n, nil
}

var errEOF = errors.New("EOF")

// TestDocsVectors: the vectors in docs/protocol.md are the data file's.
func TestDocsVectors(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^([a-z0-9_]+): ([0-9a-f]+)$`)
	var inDoc []string
	for _, m := range line.FindAllString(string(doc), -1) {
		inDoc = append(inDoc, m)
	}
	var inFile []string
	for _, v := range readVectors(t, text) {
		inFile = append(inFile, fmt.Sprintf("%s: %x", v.name, v.b))
	}
	if !reflect.DeepEqual(inDoc, inFile) {
		t.Fatalf("docs/protocol.md's test vectors differ from %s:\ndocs:\n%s\nfile:\n%s",
			vectorsFile, strings.Join(inDoc, "\n"), strings.Join(inFile, "\n"))
	}
}
