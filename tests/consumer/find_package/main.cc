// Uses the installed consumer library: a salted record goes back to its key.
#include <iostream>

#include "saltproxy/reassembler.h"
#include "saltproxy/salt_map.h"
#include "saltproxy/salting.h"

int main() {
  saltproxy::SaltMapHistory map;
  std::string error;
  if (!map.Apply(R"({"epoch":1,"instance":"p","topics":{"t":{"keys":[{"key":"k","action":"salted",
      "destination":"t","salts":2,"partitions":[1,2],"epoch":1,"since_seq":0,"cutover":[]}]}}})",
                 &error)) {
    std::cerr << error << "\n";
    return 1;
  }
  saltproxy::Reassembler reassembler(&map, {});
  saltproxy::ConsumerRecord r;
  r.topic = "t";
  r.partition = 2;
  r.offset = 0;
  r.key = saltproxy::SaltedKey("k", 1);
  r.value = "v";
  r.headers = {{"saltproxy-key", "k"}, {"saltproxy-instance", "p"}, {"saltproxy-seq", "0"},
               {"saltproxy-epoch", "1"}};
  reassembler.Add(r, "t", saltproxy::Reassembler::Clock::now());
  std::vector<saltproxy::ReleasedRecord> released = reassembler.TakeReleased();
  if (released.size() != 1 || *released[0].key != "k") return 1;
  std::cout << "released " << *released[0].key << "\n";
  return 0;
}
