"""What the tests and the benchmarks share: loopback plumbing (net), box comparison (boxes), the
composed test photos with known faces (compose) and hostile inputs (hostile_inputs). Nothing here
imports the benchmarks, and nothing of it ships with the site."""
