// convergence-gen-vectors FILE: writes the protocol conformance vectors (every frame
// type, encoded by net/messages.h, with its decoded fields; format in
// tests/vectors/README.md) to FILE. Run through the `regenerate-vectors` build target
// to refresh the committed tests/vectors/frames.json; the test suite checks that it
// is in sync and that the C++ decoders read every vector back.

#include <cstdio>
#include <fstream>
#include <string>

#include "cmd/vectors.h"

int main(int argc, char** argv) {
  if (argc != 2 || argv[1][0] == '-') {
    std::fprintf(stderr,
                 "usage: convergence-gen-vectors FILE\n"
                 "Writes the protocol conformance vectors (JSON) to FILE.\n");
    return 2;
  }
  std::string text = conv::cmd::FrameVectorsJson();
  std::ofstream out(argv[1], std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    std::fprintf(stderr, "convergence-gen-vectors: cannot write %s\n", argv[1]);
    return 2;
  }
  return 0;
}
