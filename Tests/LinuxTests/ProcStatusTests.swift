import Foundation
import Linux
import Testing

@Suite struct ProcStatusTests {
  @Test func multiThreadProcess() throws {
    let status = try ProcStatus.parse(ProcFixture.text("multi-thread.status"))
    #expect(status.name == "a b) (c")
    #expect(status.umask == 0o022)
    #expect(status.state == .sleeping)
    #expect(status.tgid == 8193 && status.pid == 8193 && status.ppid == 1)
    #expect(status.tracerPid == 0)
    #expect(status.uid == TaskIDs(real: 0, effective: 0, saved: 0, filesystem: 0))
    #expect(status.gid == TaskIDs(real: 0, effective: 0, saved: 0, filesystem: 0))
    #expect(status.groups == [])
    #expect(status.nsTgid == [8193] && status.nsPid == [8193])
    #expect(status.nsPgid == [8193] && status.nsSid == [8193])
    #expect(status.isKernelThread == false)
    #expect(status.threads == 4)
    #expect(status.queuedSignals == 2 && status.queuedSignalsLimit == 96365)
    #expect(status.sigPnd == 0 && status.shdPnd == 0)
    // SIGUSR1 (10) and SIGRTMIN (34) blocked: bit n-1 for signal n.
    #expect(status.sigBlk == 1 << 9 | 1 << 33)
    #expect(status.sigIgn == 0b111)
    #expect(status.sigCgt == 1 << 32)
    #expect(status.capInh == 0 && status.capAmb == 0)
    #expect(status.capPrm == 0x1ff_feff_ffff)
    #expect(status.capEff == 0x1ff_feff_ffff && status.capBnd == 0x1ff_feff_ffff)
    #expect(status.noNewPrivs == false)
    #expect(status.seccomp == 0 && status.seccompFilters == 0)
    #expect(status.cpusAllowed == [0...1])
  }

  @Test func threadOfTheProcess() throws {
    let status = try ProcStatus.parse(ProcFixture.text("multi-thread.thread.status"))
    #expect(status.tgid == 8193 && status.pid == 8197)
    #expect(status.nsTgid == [8193] && status.nsPid == [8197])
    #expect(status.sigBlk == 0)
  }

  @Test func kernelThread() throws {
    let status = try ProcStatus.parse(ProcFixture.text("kthreadd.status"))
    #expect(status.name == "kthreadd")
    #expect(status.isKernelThread == true)
    #expect(status.ppid == 0)
    #expect(status.nsPgid == [0] && status.nsSid == [0])
    #expect(status.sigIgn == UInt64.max)
  }

  @Test func nestedPidNamespaces() throws {
    let status = try ProcStatus.parse(ProcFixture.text("nested-pidns.status"))
    #expect(status.name == "sleep")
    #expect(status.nsTgid == [8486, 3, 1])
    #expect(status.nsPid == [8486, 3, 1])
    #expect(status.nsPgid == [8479, 0, 0])
    #expect(status.nsSid == [5942, 0, 0])
  }

  /// Fields absent from older kernels, escapes in the name, groups and CPU lists.
  @Test func handWritten() throws {
    let text = """
      Name:\t weird\\\\name\\nx 
      Umask:\t0077
      State:\tt (tracing stop)
      Tgid:\t42
      Pid:\t43
      PPid:\t1
      TracerPid:\t7
      Uid:\t1000\t1001\t1002\t1003
      Gid:\t100\t101\t102\t103
      Groups:\t4 24 27 1000 
      NStgid:\t42
      NSpid:\t43
      NSpgid:\t42
      NSsid:\t42
      Threads:\t2
      SigQ:\t0/1024
      SigPnd:\t0000000000000100
      ShdPnd:\t0000000000004000
      SigBlk:\tfffffffe7ffbfeff
      SigIgn:\t0000000000000000
      SigCgt:\t0000000180004002
      CapInh:\t0000000000000000
      CapPrm:\t0000000000000000
      CapEff:\t0000000000000000
      CapBnd:\t000001ffffffffff
      CapAmb:\t0000000000000000
      NoNewPrivs:\t1
      Seccomp:\t2
      Cpus_allowed_list:\t0,2-5,7

      """
    let status = try ProcStatus.parse(text)
    #expect(status.name == " weird\\name\nx ")
    #expect(status.umask == 0o077)
    #expect(status.state == .tracingStop)
    #expect(status.tracerPid == 7)
    #expect(status.uid == TaskIDs(real: 1000, effective: 1001, saved: 1002, filesystem: 1003))
    #expect(status.gid.filesystem == 103)
    #expect(status.groups == [4, 24, 27, 1000])
    #expect(status.isKernelThread == nil && status.seccompFilters == nil)
    #expect(status.sigPnd == 0x100 && status.shdPnd == 0x4000)
    #expect(status.sigBlk == 0xffff_fffe_7ffb_feff)
    #expect(status.noNewPrivs && status.seccomp == 2)
    #expect(status.cpusAllowed == [0...0, 2...5, 7...7])
  }

  @Test(arguments: [
    ("Threads:\t4\n", "Threads:\tfour\n", "status line 37 is malformed (bad Threads)"),
    (
      "SigBlk:\t0000000200000200\n", "SigBlk:\t200000200\n",
      "status line 41 is malformed (bad SigBlk)"
    ),
    ("Uid:\t0\t0\t0\t0\n", "Uid:\t0\t0\t0\n", "status line 9 is malformed (bad Uid)"),
    ("State:\tS (sleeping)\n", "State:\tQ (queueing)\n", "status line 3 is malformed (bad State)"),
    (
      "Cpus_allowed_list:\t0-1\n", "Cpus_allowed_list:\t1-0\n",
      "status line 55 is malformed (bad Cpus_allowed_list)"
    ),
    ("NSpid:\t8193\n", "NSpid:\t8193 x\n", "status line 14 is malformed (bad NSpid)"),
    ("NSsid:\t8193\n", "", "status is malformed: no NSsid field"),
    ("Umask:\t0022\n", "Umask 0022\n", "status line 2 is malformed (no colon)"),
  ])
  func malformed(original: String, replacement: String, message: String) throws {
    let text = try ProcFixture.text("multi-thread.status")
    #expect(text.contains(original))
    let broken = text.replacingOccurrences(of: original, with: replacement)
    let error = try #require(ckError { try ProcStatus.parse(broken) })
    #expect(error.message.hasPrefix(message), "\(error)")
  }

  @Test func readsThisProcess() throws {
    let status = try ProcStatus.read(pid: getpid())
    #expect(status.tgid == getpid())
    #expect(status.nsPid.last.map { $0 > 0 } == true)
  }
}
