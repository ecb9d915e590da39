package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

func TestWriteLayout(t *testing.T) {
	img := Image{Name: "kvinject.local/test/x:v1", Entrypoint: []string{"/x"},
		Entries: []Entry{{Path: "/bin/x", Mode: 0o755, Data: []byte("prog")}, {Path: "/bin/y", Link: "x"}}}
	var a, b bytes.Buffer
	d1, err := Write(&a, img, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := Write(&b, img, "amd64")
	if d1 != d2 || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("not deterministic: %s vs %s", d1, d2)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = data
	}
	// Every blob is stored under its own digest.
	for name, data := range files {
		if hexd, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && hexd != "" {
			s := sha256.Sum256(data)
			if hex.EncodeToString(s[:]) != hexd {
				t.Errorf("blob %s has digest %x", name, s)
			}
		}
	}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != d1 ||
		index.Manifests[0].Annotations[AnnotationRefName] != img.Name ||
		index.Manifests[0].Platform == nil || index.Manifests[0].Platform.Architecture != "amd64" {
		t.Fatalf("index.json = %s", files["index.json"])
	}
	var manifest struct {
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(files[blobPath(d1)], &manifest); err != nil {
		t.Fatal(err)
	}
	layer := files[blobPath(manifest.Layers[0].Digest)]
	var got []string
	lr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name+"|"+h.Linkname)
	}
	want := []string{"bin/|", "bin/x|", "bin/y|x"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("layer entries = %v, want %v", got, want)
	}
}
