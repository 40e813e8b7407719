// The witness command: a c2sp.org/tlog-witness witness (add-checkpoint only)
// whose note verification, consistency check and tree hashes are Go's x/mod
// note and tlog, and whose cosignatures are cosignature/v1 (tlog-cosignature),
// for tests/api/witness.rs.
//
//	tlog-interop witness -addr HOST:PORT -state DIR -name NAME
//	    [-policy PDIR -url URL] [-pin-log KEYS_URL]
//
// DIR holds its key (created on first start), and it writes there `vkey` (its
// cosigner vkey) and `addr` (the address it listens on) once it is listening.
// It reads on every request `logs` (the vkeys of the logs it knows, one a line)
// and `fault` (a test's fault: empty, "slow <ms>", "status <code>" or
// "garbage"). What it cosigned last for each origin is `tree-<sha256(origin)>`.
//
// deploy/compose.yaml runs it as the cluster's witness, with no manual step:
//   - -policy PDIR -url URL: writes PDIR/witnesses.policy, the log's policy
//     (`witness <short name> <vkey> <URL>`, `quorum <short name>`), before it
//     listens, and PDIR/client.policy, the clients' (`log <log vkey>`, the
//     witness without its URL, the quorum), once it knows the log's key.
//   - -pin-log KEYS_URL: while DIR has no `logs`, fetches KEYS_URL (the log's
//     GET /keys) every 2 s and pins its `note_verifier_key` there: trust on
//     first use, and never again (docs/cluster.md, "A witness in Compose").
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type witness struct {
	dir     string
	name    string
	private ed25519.PrivateKey
	hash    uint32
	vkey    string
	mu      sync.Mutex
}

func runWitness(args []string) {
	flags := flag.NewFlagSet("witness", flag.ExitOnError)
	addr := flags.String("addr", "127.0.0.1:0", "listen address")
	dir := flags.String("state", "", "state directory")
	name := flags.String("name", "witness.test/w1", "cosigner name")
	policyDir := flags.String("policy", "", "directory to write witnesses.policy and client.policy in")
	url := flags.String("url", "", "the URL the log submits to, for witnesses.policy")
	pinLog := flags.String("pin-log", "", "the log's /keys URL, to pin its note key from while none is known")
	flags.Parse(args)
	w, err := openWitness(*dir, *name)
	if err != nil {
		fail(err)
	}
	if *policyDir != "" {
		if *url == "" {
			fail(errors.New("-policy needs -url"))
		}
		if err := w.writePolicies(*policyDir, *url); err != nil {
			fail(err)
		}
	}
	if *pinLog != "" {
		go w.pinLog(*pinLog, *policyDir, *url)
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		fail(err)
	}
	// Written whole, then renamed: a reader that sees "addr" sees the address.
	partial := filepath.Join(*dir, "addr.partial")
	if err := os.WriteFile(partial, []byte(listener.Addr().String()+"\n"), 0o600); err != nil {
		fail(err)
	}
	if err := os.Rename(partial, filepath.Join(*dir, "addr")); err != nil {
		fail(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/add-checkpoint", w.addCheckpoint)
	fail(http.Serve(listener, mux))
}

func openWitness(dir, name string) (*witness, error) {
	keyPath := filepath.Join(dir, "key")
	seed, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		seed = make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		if err := os.WriteFile(keyPath, seed, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	private := ed25519.NewKeyFromSeed(seed)
	public := private.Public().(ed25519.PublicKey)
	hash := cosignerKeyHash(name, public)
	vkey := fmt.Sprintf("%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{0x04}, public...)))
	if err := os.WriteFile(filepath.Join(dir, "vkey"), []byte(vkey+"\n"), 0o600); err != nil {
		return nil, err
	}
	return &witness{dir: dir, name: name, private: private, hash: hash, vkey: vkey}, nil
}

// shortName is the witness's name in a policy file: its cosigner name's last
// path element.
func (w *witness) shortName() string {
	return w.name[strings.LastIndex(w.name, "/")+1:]
}

// writePolicies writes the log's policy, and the clients' once the log's key is
// known (in `logs`). Both are world-readable: they hold public keys only, and
// the log's replicas run as another user.
func (w *witness) writePolicies(dir, url string) error {
	short := w.shortName()
	server := fmt.Sprintf("witness %s %s %s\nquorum %s\n", short, w.vkey, url, short)
	if err := writeFile(filepath.Join(dir, "witnesses.policy"), []byte(server), 0o644); err != nil {
		return err
	}
	logs, err := os.ReadFile(filepath.Join(w.dir, "logs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	client := ""
	for _, vkey := range strings.Fields(string(logs)) {
		client += "log " + vkey + "\n"
	}
	client += fmt.Sprintf("witness %s %s\nquorum %s\n", short, w.vkey, short)
	return writeFile(filepath.Join(dir, "client.policy"), []byte(client), 0o644)
}

// pinLog fetches the log's note key from keysURL until it gets one, unless
// `logs` already names a log, and keeps it in `logs`: trust on first use.
func (w *witness) pinLog(keysURL, policyDir, url string) {
	logsPath := filepath.Join(w.dir, "logs")
	for {
		if _, err := os.Stat(logsPath); err == nil {
			return
		}
		vkey, err := fetchNoteKey(keysURL)
		if err == nil {
			_, err = newVerifier(vkey)
		}
		if err == nil {
			err = writeAtomic(logsPath, []byte(vkey+"\n"))
		}
		if err == nil && policyDir != "" {
			err = w.writePolicies(policyDir, url)
		}
		if err == nil {
			fmt.Fprintf(os.Stderr, "witness: pinned the log key %s from %s\n", vkey, keysURL)
			return
		}
		fmt.Fprintf(os.Stderr, "witness: no log key from %s yet: %v\n", keysURL, err)
		time.Sleep(2 * time.Second)
	}
}

// fetchNoteKey is the `note_verifier_key` of a GET /keys answer.
func fetchNoteKey(keysURL string) (string, error) {
	client := http.Client{Timeout: 10 * time.Second}
	response, err := client.Get(keysURL)
	if err != nil {
		return "", err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d", response.StatusCode)
	}
	var keys struct {
		NoteVerifierKey string `json:"note_verifier_key"`
	}
	if err := json.NewDecoder(io.LimitReader(response.Body, 1<<20)).Decode(&keys); err != nil {
		return "", err
	}
	if keys.NoteVerifierKey == "" {
		return "", errors.New("no note_verifier_key")
	}
	return keys.NoteVerifierKey, nil
}

func (w *witness) addCheckpoint(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(rw, "POST only", http.StatusMethodNotAllowed)
		return
	}
	fault, _ := os.ReadFile(filepath.Join(w.dir, "fault"))
	switch f := strings.Fields(string(fault)); {
	case len(f) == 2 && f[0] == "slow":
		ms, _ := strconv.Atoi(f[1])
		time.Sleep(time.Duration(ms) * time.Millisecond)
	case len(f) == 2 && f[0] == "status":
		code, _ := strconv.Atoi(f[1])
		http.Error(rw, "fault", code)
		return
	case len(f) == 1 && f[0] == "garbage":
		rw.WriteHeader(http.StatusOK)
		rw.Write([]byte("this is not a signature line\n"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	code, answer, contentType := w.add(body)
	if contentType != "" {
		rw.Header().Set("Content-Type", contentType)
	}
	rw.WriteHeader(code)
	rw.Write(answer)
}

// add is add-checkpoint's checks, in tlog-witness's order: the status, the body
// and its content type.
func (w *witness) add(body []byte) (int, []byte, string) {
	head, msg, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return 400, []byte("no blank line\n"), ""
	}
	lines := strings.Split(string(head), "\n")
	ok = strings.HasPrefix(lines[0], "old ")
	oldText := strings.TrimPrefix(lines[0], "old ")
	old, err := strconv.ParseInt(oldText, 10, 64)
	if !ok || err != nil || old < 0 || strconv.FormatInt(old, 10) != oldText {
		return 400, []byte("bad old size line\n"), ""
	}
	var proof tlog.TreeProof
	for _, line := range lines[1:] {
		hash, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(hash) != tlog.HashSize {
			return 400, []byte("bad proof line\n"), ""
		}
		var h tlog.Hash
		copy(h[:], hash)
		proof = append(proof, h)
	}
	if len(proof) > 63 {
		return 400, []byte("too many proof lines\n"), ""
	}
	logs, err := w.logs()
	if err != nil {
		return 500, []byte(err.Error()), ""
	}
	origin, _, _ := strings.Cut(string(msg), "\n")
	var known []note.Verifier
	for _, v := range logs {
		if v.Name() == origin {
			known = append(known, v)
		}
	}
	if len(known) == 0 {
		return 404, []byte("unknown log\n"), ""
	}
	n, err := note.Open(msg, note.VerifierList(known...))
	if err != nil {
		return 403, []byte(err.Error() + "\n"), ""
	}
	tree, err := parseCheckpoint(n.Text, origin)
	if err != nil {
		return 400, []byte(err.Error() + "\n"), ""
	}
	if old > tree.N {
		return 400, []byte("old size larger than the checkpoint\n"), ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	stored, err := w.stored(origin)
	if err != nil {
		return 500, []byte(err.Error()), ""
	}
	if old != stored.N {
		return 409, []byte(fmt.Sprintf("%d\n", stored.N)), "text/x.tlog.size"
	}
	if tree.N == 0 && tree.Hash != (tlog.Hash(sha256.Sum256(nil))) {
		return 422, []byte("the empty tree's root is the hash of nothing\n"), ""
	}
	if old == 0 {
		if len(proof) != 0 {
			return 422, []byte("a proof from the empty tree\n"), ""
		}
	} else if err := tlog.CheckTree(proof, tree.N, tree.Hash, stored.N, stored.Hash); err != nil {
		return 422, []byte("inconsistent: " + err.Error() + "\n"), ""
	}
	state := fmt.Sprintf("%d\n%s\n", tree.N, base64.StdEncoding.EncodeToString(tree.Hash[:]))
	if err := writeAtomic(w.treePath(origin), []byte(state)); err != nil {
		return 500, []byte(err.Error()), ""
	}
	t := uint64(time.Now().Unix())
	sig := binary.BigEndian.AppendUint64(nil, t)
	sig = append(sig, ed25519.Sign(w.private, cosignedMessage(t, []byte(n.Text)))...)
	keyed := binary.BigEndian.AppendUint32(nil, w.hash)
	line := fmt.Sprintf("\u2014 %s %s\n", w.name, base64.StdEncoding.EncodeToString(append(keyed, sig...)))
	return 200, []byte(line), "text/plain; charset=utf-8"
}

func (w *witness) logs() ([]note.Verifier, error) {
	data, err := os.ReadFile(filepath.Join(w.dir, "logs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []note.Verifier
	for _, line := range strings.Fields(string(data)) {
		v, err := newVerifier(line)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	return list, nil
}

func (w *witness) treePath(origin string) string {
	sum := sha256.Sum256([]byte(origin))
	return filepath.Join(w.dir, "tree-"+hex.EncodeToString(sum[:]))
}

// stored is the tree last cosigned for origin: size 0 if none.
func (w *witness) stored(origin string) (tlog.Tree, error) {
	data, err := os.ReadFile(w.treePath(origin))
	if errors.Is(err, os.ErrNotExist) {
		return tlog.Tree{}, nil
	}
	if err != nil {
		return tlog.Tree{}, err
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return tlog.Tree{}, errors.New("corrupt witness state")
	}
	size, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return tlog.Tree{}, err
	}
	hash, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil || len(hash) != tlog.HashSize {
		return tlog.Tree{}, errors.New("corrupt witness state")
	}
	var h tlog.Hash
	copy(h[:], hash)
	return tlog.Tree{N: size, Hash: h}, nil
}

func writeAtomic(path string, data []byte) error {
	return writeFile(path, data, 0o600)
}

// writeFile replaces path with data, durably, with the file mode perm.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The umask may have narrowed perm.
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
