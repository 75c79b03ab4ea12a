"""What the tests and the benchmarks share: loopback plumbing (net), box comparison (boxes), the
book's face detection as the baseline (book), the composed test photos with known faces (compose),
hostile inputs (hostile_inputs), a photo as a fake camera's video (video) and commands started
with Ctrl-C at its default (interrupts). Nothing here imports the benchmarks, and nothing of it
ships with the site."""
