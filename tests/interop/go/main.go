// Command tlog-interop checks wasm-hypervisor's C2SP formats with Go's reference
// implementation, golang.org/x/mod/sumdb/note and sumdb/tlog, and produces notes,
// tiles and a tlog-proof of its own for the Rust side to check
// (crates/protocol/tests/tlog_interop.rs builds and runs it).
//
// Go's x/mod knows signed notes of type 0x01 and tiles (its paths carry the tile
// height, tile/8/..., where C2SP's do not); the ECDSA (0x02) and cosignature/v1
// (0x04) verifiers and signers below implement the note package's Verifier and
// Signer interfaces from signed-note.md and tlog-cosignature.md, and the
// tlog-proof reader follows tlog-proof.md.
//
// Usage, every command reading files under -dir (and first under -overlay, where a
// test puts the one tampered file of a variant):
//
//	tlog-interop check-log -dir D [-overlay O] SIZE
//	tlog-interop check-proof -dir D [-overlay O] FILE
//	tlog-interop check-consistency -dir D [-overlay O] OLD NEW
//	tlog-interop make-log -dir D SIZE INDEX
//	tlog-interop witness -addr HOST:PORT -state DIR -name NAME   (witness.go)
//
// It prints "ok ..." and exits 0, or prints "refused: <reason>" and exits 1; any
// other failure (usage, a missing file of the base directory) exits 2.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// refusal is a check that failed: the outcome a tampered input must get.
type refusal struct{ error }

func refuse(format string, args ...interface{}) error {
	return refusal{fmt.Errorf(format, args...)}
}

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: tlog-interop COMMAND -dir DIR [-overlay DIR] ARGS"))
	}
	if os.Args[1] == "witness" {
		runWitness(os.Args[2:])
		return
	}
	flags := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := flags.String("dir", "", "the log's files")
	overlay := flags.String("overlay", "", "files read in place of the log's")
	flags.Parse(os.Args[2:])
	files := &files{dir: *dir, overlay: *overlay}
	args := flags.Args()
	var out string
	var err error
	switch os.Args[1] {
	case "check-log":
		out, err = checkLog(files, atoi(args, 0))
	case "check-proof":
		out, err = checkProof(files, arg(args, 0))
	case "check-consistency":
		out, err = checkConsistency(files, atoi(args, 0), atoi(args, 1))
	case "make-log":
		out, err = makeLog(*dir, atoi(args, 0), atoi(args, 1))
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
	fmt.Println("ok", os.Args[1], out)
}

func fail(err error) {
	var r refusal
	if errors.As(err, &r) {
		fmt.Println("refused:", r.error)
		os.Exit(1)
	}
	fmt.Println("error:", err)
	os.Exit(2)
}

func arg(args []string, i int) string {
	if i >= len(args) {
		fail(errors.New("missing argument"))
	}
	return args[i]
}

func atoi(args []string, i int) int64 {
	n, err := strconv.ParseInt(arg(args, i), 10, 64)
	if err != nil {
		fail(err)
	}
	return n
}

type files struct{ dir, overlay string }

// read gives the overlay's file when it has one, else the directory's.
func (f *files) read(name string) ([]byte, error) {
	if f.overlay != "" {
		if data, err := os.ReadFile(filepath.Join(f.overlay, name)); err == nil {
			return data, nil
		}
	}
	return os.ReadFile(filepath.Join(f.dir, name))
}

func (f *files) text(name string) (string, error) {
	data, err := f.read(name)
	return strings.TrimSpace(string(data)), err
}

// verifiers are the log's keys: the note key (type 0x01, by x/mod's own
// NewVerifier), the P-256 key (0x02) and, when the directory names one, the
// witness (0x04; a log with no witness has no witness-vkey file).
func (f *files) verifiers() (note.Verifiers, []note.Verifier, error) {
	var list []note.Verifier
	for _, name := range []string{"vkey", "p256-vkey", "witness-vkey"} {
		vkey, err := f.text(name)
		if name == "witness-vkey" && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		v, err := newVerifier(vkey)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", name, err)
		}
		list = append(list, v)
	}
	return note.VerifierList(list...), list, nil
}

// openCheckpoint opens a checkpoint note: every one of the keys must have
// signed it, and its text must be a three-line C2SP checkpoint.
func openCheckpoint(f *files, msg []byte) (tlog.Tree, error) {
	known, list, err := f.verifiers()
	if err != nil {
		return tlog.Tree{}, err
	}
	n, err := note.Open(msg, known)
	if err != nil {
		return tlog.Tree{}, refuse("note.Open: %v", err)
	}
	for _, v := range list {
		found := false
		for _, sig := range n.Sigs {
			found = found || (sig.Name == v.Name() && sig.Hash == v.KeyHash())
		}
		if !found {
			return tlog.Tree{}, refuse("no valid signature of %s+%08x", v.Name(), v.KeyHash())
		}
	}
	origin, _ := f.text("origin")
	return parseCheckpoint(n.Text, origin)
}

func parseCheckpoint(text, origin string) (tlog.Tree, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" || lines[0] != origin {
		return tlog.Tree{}, refuse("not a checkpoint of %s: %q", origin, text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return tlog.Tree{}, refuse("bad tree size %q", lines[1])
	}
	hash, err := tlog.ParseHash(lines[2])
	if err != nil {
		return tlog.Tree{}, refuse("bad root hash %q", lines[2])
	}
	return tlog.Tree{N: size, Hash: hash}, nil
}

// tiles serves the C2SP tiles to tlog.TileHashReader, mapping Go's paths
// (tile/8/L/N) to C2SP's (tile/L/N).
type tiles struct {
	files *files
	read  int
}

func (t *tiles) Height() int { return 8 }

func (t *tiles) ReadTiles(list []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(list))
	for i, tile := range list {
		path := "tile/" + strings.TrimPrefix(tile.Path(), "tile/8/")
		bytes, err := t.files.read(path)
		if err != nil {
			return nil, refuse("tile %s: %v", path, err)
		}
		if len(bytes) != tile.W*tlog.HashSize {
			return nil, refuse("tile %s: %d bytes", path, len(bytes))
		}
		data[i] = bytes
		t.read++
	}
	return data, nil
}

func (t *tiles) SaveTiles([]tlog.Tile, [][]byte) {}

// entriesPath is the C2SP path of entry bundle n, w entries wide.
func entriesPath(n int64, w int) string {
	return "tile/entries/" + strings.TrimPrefix(tlog.Tile{H: 8, L: 0, N: n, W: w}.Path(), "tile/8/0/")
}

// checkLog opens checkpoint-SIZE, reads every leaf hash of the tree through
// TileHashReader, and checks that every entry of the entry bundles hashes to its
// leaf hash; then it rebuilds the tree from those leaf hashes with tlog's own
// StoredHashes and checks its root and every hash tile of it, byte for byte.
//
// The rebuild is not redundant: x/mod's TileHashReader leaves some tiles
// unauthenticated when the root's subtree hashes come from fewer tiles than there
// are of them (its loop "Authenticate full tiles against their parents" starts at
// len(stx), the number of subtree hashes, not at the number of distinct tiles
// they were read from), so a forged level-0 tile and forged entries that hash to
// it pass ReadHashes in a tree of 300 leaves. The test's tampered variants include
// that forgery.
func checkLog(f *files, size int64) (string, error) {
	msg, err := f.read(fmt.Sprintf("checkpoint-%d", size))
	if err != nil {
		return "", err
	}
	tree, err := openCheckpoint(f, msg)
	if err != nil {
		return "", err
	}
	if tree.N != size {
		return "", refuse("checkpoint-%d is of size %d", size, tree.N)
	}
	t := &tiles{files: f}
	reader := tlog.TileHashReader(tree, t)
	root, err := tlog.TreeHash(size, reader)
	if err != nil {
		return "", refuse("TreeHash: %v", err)
	}
	if root != tree.Hash {
		return "", refuse("the tiles hash to %v, not %v", root, tree.Hash)
	}
	indexes := make([]int64, size)
	for i := range indexes {
		indexes[i] = tlog.StoredHashIndex(0, int64(i))
	}
	leafHashes, err := reader.ReadHashes(indexes)
	if err != nil {
		return "", refuse("ReadHashes: %v", err)
	}
	bundles := 0
	for n := int64(0); n*256 < size; n++ {
		w := int(size - n*256)
		if w > 256 {
			w = 256
		}
		path := entriesPath(n, w)
		bundle, err := f.read(path)
		if err != nil {
			return "", refuse("%s: %v", path, err)
		}
		for j := 0; j < w; j++ {
			if len(bundle) < 2 || len(bundle) < 2+int(binary.BigEndian.Uint16(bundle)) {
				return "", refuse("%s: truncated at entry %d", path, j)
			}
			length := int(binary.BigEndian.Uint16(bundle))
			entry := bundle[2 : 2+length]
			bundle = bundle[2+length:]
			if tlog.RecordHash(entry) != leafHashes[n*256+int64(j)] {
				return "", refuse("%s: entry %d does not hash to leaf %d", path, j, n*256+int64(j))
			}
		}
		if len(bundle) != 0 {
			return "", refuse("%s: %d bytes after its %d entries", path, len(bundle), w)
		}
		bundles++
	}
	var stored []tlog.Hash
	hashReader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, hash := range leafHashes {
		hashes, err := tlog.StoredHashesForRecordHash(int64(i), hash, hashReader)
		if err != nil {
			return "", err
		}
		stored = append(stored, hashes...)
	}
	rebuilt, err := tlog.TreeHash(size, hashReader)
	if err != nil {
		return "", err
	}
	if rebuilt != tree.Hash {
		return "", refuse("the leaf hashes the tiles gave make a tree of root %v, not %v", rebuilt, tree.Hash)
	}
	audited := 0
	for level := 0; size>>(8*level) > 0; level++ {
		items := size >> (8 * level)
		for n := int64(0); n*256 < items; n++ {
			w := items - n*256
			if w > 256 {
				w = 256
			}
			tile := tlog.Tile{H: 8, L: level, N: n, W: int(w)}
			want, err := tlog.ReadTileData(tile, hashReader)
			if err != nil {
				return "", err
			}
			path := "tile/" + strings.TrimPrefix(tile.Path(), "tile/8/")
			served, err := f.read(path)
			if err != nil {
				return "", refuse("%s: %v", path, err)
			}
			if !bytes.Equal(served, want) {
				return "", refuse("%s is not the tile tlog computes from the entries", path)
			}
			audited++
		}
	}
	return fmt.Sprintf("size=%d entries=%d bundles=%d tiles-read=%d tiles-audited=%d", size, size, bundles, t.read, audited), nil
}

// checkProof reads a c2sp.org/tlog-proof@v1, opens its checkpoint and checks its
// inclusion proof with tlog.CheckRecord, the leaf hash being RecordHash(extra).
func checkProof(f *files, name string) (string, error) {
	text, err := f.read(name)
	if err != nil {
		return "", err
	}
	extra, index, proof, msg, err := parseTlogProof(text)
	if err != nil {
		return "", err
	}
	tree, err := openCheckpoint(f, msg)
	if err != nil {
		return "", err
	}
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, index, tlog.RecordHash(extra)); err != nil {
		return "", refuse("CheckRecord: %v", err)
	}
	return fmt.Sprintf("index=%d size=%d", index, tree.N), nil
}

func parseTlogProof(text []byte) (extra []byte, index int64, proof tlog.RecordProof, msg []byte, err error) {
	parts := bytes.SplitN(text, []byte("\n\n"), 2)
	if len(parts) != 2 {
		return nil, 0, nil, nil, refuse("no empty line before the checkpoint")
	}
	lines := strings.Split(string(parts[0]), "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		return nil, 0, nil, nil, refuse("bad header %q", lines[0])
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		extra, err = base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[0], "extra "))
		if err != nil {
			return nil, 0, nil, nil, refuse("bad extra: %v", err)
		}
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return nil, 0, nil, nil, refuse("no index line")
	}
	index, err = strconv.ParseInt(strings.TrimPrefix(lines[0], "index "), 10, 64)
	if err != nil {
		return nil, 0, nil, nil, refuse("bad index: %v", err)
	}
	for _, line := range lines[1:] {
		hash, err := tlog.ParseHash(line)
		if err != nil {
			return nil, 0, nil, nil, refuse("bad proof hash %q", line)
		}
		proof = append(proof, hash)
	}
	return extra, index, proof, parts[1], nil
}

// checkConsistency opens checkpoint-OLD and checkpoint-NEW, has tlog.ProveTree
// compute the consistency proof from the new tree's tiles, checks it with
// tlog.CheckTree, and checks that our proof (consistency-OLD-NEW) is the same and
// passes CheckTree too.
func checkConsistency(f *files, old, new int64) (string, error) {
	var trees [2]tlog.Tree
	for i, size := range []int64{old, new} {
		msg, err := f.read(fmt.Sprintf("checkpoint-%d", size))
		if err != nil {
			return "", err
		}
		if trees[i], err = openCheckpoint(f, msg); err != nil {
			return "", err
		}
	}
	t := &tiles{files: f}
	proof, err := tlog.ProveTree(new, old, tlog.TileHashReader(trees[1], t))
	if err != nil {
		return "", refuse("ProveTree: %v", err)
	}
	if err := tlog.CheckTree(proof, new, trees[1].Hash, old, trees[0].Hash); err != nil {
		return "", refuse("CheckTree of Go's proof: %v", err)
	}
	text, err := f.read(fmt.Sprintf("consistency-%d-%d", old, new))
	if err != nil {
		return "", err
	}
	var ours tlog.TreeProof
	for _, line := range strings.Fields(string(text)) {
		hash, err := tlog.ParseHash(line)
		if err != nil {
			return "", refuse("bad proof hash %q", line)
		}
		ours = append(ours, hash)
	}
	if err := tlog.CheckTree(ours, new, trees[1].Hash, old, trees[0].Hash); err != nil {
		return "", refuse("CheckTree of our proof: %v", err)
	}
	if fmt.Sprint(ours) != fmt.Sprint(proof) {
		return "", refuse("our proof differs from Go's")
	}
	return fmt.Sprintf("old=%d new=%d hashes=%d tiles=%d", old, new, len(proof), t.read), nil
}

// makeLog writes a log of SIZE 57-byte v1 leaves made in Go: its tiles (every
// tile tlog.NewTiles lists, partial widths included) and entry bundles, a
// checkpoint signed by a fresh note key, a P-256 key and cosigned by a fresh
// witness, their vkeys, and a tlog-proof of leaf INDEX from tlog.ProveRecord.
func makeLog(dir string, size, index int64) (string, error) {
	var hashes []tlog.Hash
	hashReader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			out[i] = hashes[x]
		}
		return out, nil
	})
	var leaves [][]byte
	for i := int64(0); i < size; i++ {
		id := sha256.Sum256([]byte(fmt.Sprintf("execution %d", i)))
		commitment := sha256.Sum256([]byte(fmt.Sprintf("commitment %d", i)))
		leaf := append([]byte{0x01}, id[:16]...)
		leaf = binary.BigEndian.AppendUint64(leaf, uint64(1795000000000+i))
		leaf = append(leaf, commitment[:]...)
		stored, err := tlog.StoredHashes(i, leaf, hashReader)
		if err != nil {
			return "", err
		}
		hashes = append(hashes, stored...)
		leaves = append(leaves, leaf)
	}
	root, err := tlog.TreeHash(size, hashReader)
	if err != nil {
		return "", err
	}
	write := func(name string, data []byte) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fail(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			fail(err)
		}
	}
	tileCount := 0
	for _, tile := range tlog.NewTiles(8, 0, size) {
		data, err := tlog.ReadTileData(tile, hashReader)
		if err != nil {
			return "", err
		}
		write("tile/"+strings.TrimPrefix(tile.Path(), "tile/8/"), data)
		tileCount++
	}
	for n := int64(0); n*256 < size; n++ {
		end := n*256 + 256
		if end > size {
			end = size
		}
		var bundle []byte
		for _, leaf := range leaves[n*256 : end] {
			bundle = binary.BigEndian.AppendUint16(bundle, uint16(len(leaf)))
			bundle = append(bundle, leaf...)
		}
		write(entriesPath(n, int(end-n*256)), bundle)
	}

	const origin = "go.example/log"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return "", err
	}
	logSigner, err := note.NewSigner(skey)
	if err != nil {
		return "", err
	}
	p256Signer, p256Vkey, err := newECDSASigner(origin)
	if err != nil {
		return "", err
	}
	witness, witnessVkey, err := newCosigner("go.example/witness")
	if err != nil {
		return "", err
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", origin, size, root)
	checkpoint, err := note.Sign(&note.Note{Text: text}, logSigner, p256Signer, witness)
	if err != nil {
		return "", err
	}
	proof, err := tlog.ProveRecord(size, index, hashReader)
	if err != nil {
		return "", err
	}
	var tlogProof bytes.Buffer
	fmt.Fprintf(&tlogProof, "c2sp.org/tlog-proof@v1\nextra %s\nindex %d\n", base64.StdEncoding.EncodeToString(leaves[index]), index)
	for _, hash := range proof {
		fmt.Fprintf(&tlogProof, "%s\n", hash)
	}
	tlogProof.WriteString("\n")
	tlogProof.Write(checkpoint)

	write("checkpoint", checkpoint)
	write("vkey", []byte(vkey+"\n"))
	write("p256-vkey", []byte(p256Vkey+"\n"))
	write("witness-vkey", []byte(witnessVkey+"\n"))
	write("proof", tlogProof.Bytes())
	return fmt.Sprintf("size=%d tiles=%d", size, tileCount), nil
}

// newVerifier reads a vkey of type 0x01 (x/mod's own), 0x02 or 0x04.
func newVerifier(vkey string) (note.Verifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("malformed vkey")
	}
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(key) < 2 {
		return nil, errors.New("malformed vkey")
	}
	hash, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil || len(parts[1]) != 8 {
		return nil, errors.New("malformed key id")
	}
	switch key[0] {
	case 0x02:
		// signed-note: the key id is SHA-256 of the DER SPKI, truncated.
		sum := sha256.Sum256(key[1:])
		if binary.BigEndian.Uint32(sum[:]) != uint32(hash) {
			return nil, errors.New("key id mismatch")
		}
		parsed, err := x509.ParsePKIXPublicKey(key[1:])
		if err != nil {
			return nil, err
		}
		public, ok := parsed.(*ecdsa.PublicKey)
		if !ok {
			return nil, errors.New("not an ECDSA key")
		}
		return &verifier{parts[0], uint32(hash), func(msg, sig []byte) bool {
			digest := sha256.Sum256(msg)
			return ecdsa.VerifyASN1(public, digest[:], sig)
		}}, nil
	case 0x04:
		// tlog-cosignature: timestamp (u64 BE) || Ed25519 over
		// "cosignature/v1\ntime <t>\n" || note text.
		if len(key) != 33 || cosignerKeyHash(parts[0], key[1:]) != uint32(hash) {
			return nil, errors.New("bad cosigner key")
		}
		public := ed25519.PublicKey(key[1:])
		return &verifier{parts[0], uint32(hash), func(msg, sig []byte) bool {
			if len(sig) != 8+ed25519.SignatureSize {
				return false
			}
			t := binary.BigEndian.Uint64(sig)
			return t < 1<<63 && ed25519.Verify(public, cosignedMessage(t, msg), sig[8:])
		}}, nil
	default:
		return note.NewVerifier(vkey)
	}
}

type verifier struct {
	name   string
	hash   uint32
	verify func(msg, sig []byte) bool
}

func (v *verifier) Name() string                { return v.name }
func (v *verifier) KeyHash() uint32             { return v.hash }
func (v *verifier) Verify(msg, sig []byte) bool { return v.verify(msg, sig) }

type signer struct {
	name string
	hash uint32
	sign func(msg []byte) ([]byte, error)
}

func (s *signer) Name() string                    { return s.name }
func (s *signer) KeyHash() uint32                 { return s.hash }
func (s *signer) Sign(msg []byte) ([]byte, error) { return s.sign(msg) }

func cosignerKeyHash(name string, public []byte) uint32 {
	sum := sha256.Sum256(append(append([]byte(name+"\n"), 0x04), public...))
	return binary.BigEndian.Uint32(sum[:])
}

func cosignedMessage(t uint64, text []byte) []byte {
	return append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), text...)
}

func newECDSASigner(name string) (note.Signer, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(spki)
	hash := binary.BigEndian.Uint32(sum[:])
	s := &signer{name, hash, func(msg []byte) ([]byte, error) {
		digest := sha256.Sum256(msg)
		return ecdsa.SignASN1(rand.Reader, key, digest[:])
	}}
	vkey := fmt.Sprintf("%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{0x02}, spki...)))
	return s, vkey, nil
}

func newCosigner(name string) (note.Signer, string, error) {
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	hash := cosignerKeyHash(name, public)
	s := &signer{name, hash, func(msg []byte) ([]byte, error) {
		const t = 1800000000
		sig := binary.BigEndian.AppendUint64(nil, t)
		return append(sig, ed25519.Sign(private, cosignedMessage(t, msg))...), nil
	}}
	vkey := fmt.Sprintf("%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{0x04}, public...)))
	return s, vkey, nil
}
