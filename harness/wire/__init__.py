"""Wire layer: the simulated clock and TCP, packet bytes (scapy-declared, fast-path built), pcap files."""
