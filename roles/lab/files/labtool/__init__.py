"""Lab hosts for ebpf.deploy: network namespaces that Ansible reaches over real SSH.

One lab host ``<prefix>-h<N>`` is a network namespace with
  * ``eth0`` (data): a veth whose peer ``eth0`` lives in the traffic-peer namespace ``<prefix>-p<N>``,
  * ``mgmt0`` (management): a veth whose peer ``<prefix>-m<N>`` lives in the root namespace, enslaved
    to the bridge ``<prefix>-br0`` (or, without a bridge, addressed point to point),
  * an sshd on the management address, running in its own mount namespace with a private tmpfs on
    /run and its own bpffs on /sys/fs/bpf, so pins are per host.

VM hosts ``<prefix>-v<N>`` (qemu guests on Debian 12/13 images, their own kernel) live in the
``vm_*`` files and join the same inventory: group ``netns`` for namespace hosts, ``vm`` for VMs, both
in ``lab``.

Subcommands (each prints one JSON object on stdout; exit status 0 unless ``failed``):
  up       create, repair or resize the lab; idempotent (``changed`` is false when nothing was done)
  down     kill every process in the lab namespaces, delete namespaces, links and the files it made
  status   report every host's health without changing anything
  traffic  send a bounded number of UDP datagrams from a host's peer namespace to the host

Only the standard library is used, so any python3 can run it. It must run as root. The entry
script is ``../ebpfd_lab.py`` (the role and the tests run it by that path); this package is split
by concept:

  errors        LabError, VmError
  commands      running a command (``ip -batch``, ``ip -j``), writing a file only when it changed
  namespaces    entering and listing network namespaces, their links, addresses and neighbours
  processes     ending processes by PID (SIGTERM, then SIGKILL)
  naming        the desired lab: names, addresses, MACs (LabConfig.plan), the lab's files and lock
  netns_hosts   one namespace host: its problems, creation, removal, convergence; the bridge
  sshd          a host's sshd and keys, ssh control masters
  inventory     the Ansible inventory of the lab
  vm_hooks      what the VM side borrows from the namespace side
  up, cleanup, status, traffic   the subcommands; cli parses the command line

  vm_plan       the VMs' names and addresses
  vm_images     the Debian images, built with mmdebstrap
  vm_processes  finding a lab's qemu by PID, SSH banners, free ports
  vm_accel      KVM or TCG
  vm_machine    one VM: qemu's command line, seed disk, tap peer, start, problems, removal
  vm_lab        the VMs of a lab: converge, remove, inventory and known_hosts lines

One VM host ``<prefix>-v<N>`` is a qemu process on this machine (root network namespace) that runs
  * a Debian image (``debian12``: kernel 6.1, ``debian13``: kernel 6.12) built from Debian packages
    only by ``ebpfd_image.sh`` (mmdebstrap), cached under the image dir keyed by a digest of the
    package list and the build script, booted directly (-kernel/-initrd from the image's own /boot)
    from a fresh qcow2 copy-on-write overlay, so a VM that (re)starts starts clean;
  * ``eth0`` (data): a virtio-net NIC whose backend is a tap device ``eth0`` that lives in the
    traffic-peer namespace ``<prefix>-pv<N>`` (opened there, handed to qemu as a file descriptor,
    so it disappears with qemu); both ends have fixed MACs and permanent neighbours, as on netns hosts;
  * ``mgmt0`` (management): qemu user-mode networking with ``restrict=on`` (the guest reaches
    nothing outside) and one port forward 127.0.0.1:<port> -> guest:22 for SSH; user-mode
    networking needs no bridge, no address plan and no route on the controller, and a loopback port
    cannot collide with the netns hosts' management network;
  * a small read-only seed disk (a tar archive: host key, authorized_keys, hostname, addresses)
    applied at boot by ``ebpfd-lab-seed.service`` inside the image.

Processes are found by the PID the lab recorded (state and qemu's pidfile) and checked (executable
and command line) before they are ended; nothing is ever ended by name. Only the standard library
is used.
"""
