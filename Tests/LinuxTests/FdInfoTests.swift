import Foundation
import Linux
import Testing

@Suite struct FdInfoTests {
  @Test func regularFiles() throws {
    let file = try FdInfo.parse(ProcFixture.text("multi-thread.fdinfo.3"))
    #expect(file == FdInfo(pos: 100, flags: 0o100002, mountID: 27, inode: 16_220_731))
    // The inode matches the shared mapping of the same file.
    let maps = try ProcMaps.parse(ProcFixture.text("multi-thread.maps"))
    #expect(maps.contains { $0.inode == file.inode && $0.path == "/tmp/procfix/data file.bin" })

    // The unlinked file's descriptor still names the inode of its (deleted) mapping.
    let gone = try FdInfo.parse(ProcFixture.text("multi-thread.fdinfo.4"))
    #expect(maps.contains { $0.inode == gone.inode && $0.isDeleted })

    let append = try FdInfo.parse(ProcFixture.text("multi-thread.fdinfo.13"))
    #expect(append.pos == 6)
    #expect(append.flags == UInt32(O_WRONLY | O_APPEND) | 0o100000)  // O_LARGEFILE
    let pipe = try FdInfo.parse(ProcFixture.text("multi-thread.fdinfo.11"))
    #expect(pipe.flags == 0 && pipe.inode == 31949 && pipe.extra.isEmpty)
  }

  @Test func eventfd() throws {
    let info = try FdInfo.parse(ProcFixture.text("multi-thread.fdinfo.5"))
    #expect(info.flags == UInt32(O_RDWR | O_NONBLOCK | O_CLOEXEC))
    #expect(info.eventfdCount == 42)
    #expect(info.value(for: "eventfd-id") == "5")
    #expect(info.value(for: "eventfd-semaphore") == "0")
    #expect(info.extra.map(\.key) == ["eventfd-count", "eventfd-id", "eventfd-semaphore"])
  }

  @Test func timerfd() throws {
    let info = try FdInfo.parse(ProcFixture.text("multi-thread.fdinfo.6"))
    #expect(info.timerfdClockID == 1)
    #expect(info.value(for: "ticks") == "0")
    #expect(info.value(for: "settime flags") == "00")
    #expect(info.value(for: "it_value") == "(92, 879890244)")
    #expect(info.value(for: "it_interval") == "(1, 0)")
  }

  @Test func signalfd() throws {
    let info = try FdInfo.parse(ProcFixture.text("multi-thread.fdinfo.7"))
    #expect(info.signalfdMask == 1 << 9 | 1 << 33)  // SIGUSR1, SIGRTMIN
    #expect(info.eventfdCount == nil && info.timerfdClockID == nil)
  }

  @Test func inotify() throws {
    let info = try FdInfo.parse(ProcFixture.text("multi-thread.fdinfo.8"))
    #expect(info.extra.count == 1)
    let watch = try #require(info.extra.first)
    #expect(watch.key == "inotify")
    let fields = try #require(watch.recordFields)
    #expect(
      fields.map(\.name) == [
        "wd", "ino", "sdev", "mask", "ignored_mask", "fhandle-bytes", "fhandle-type", "f_handle",
      ])
    #expect(fields[3].value == "300" && fields[7].value == "2982f700d9cd928e")
  }

  @Test func epoll() throws {
    let info = try FdInfo.parse(ProcFixture.text("multi-thread.fdinfo.9"))
    let target = try #require(info.extra.first)
    #expect(target.key == "tfd")
    let fields = try #require(target.recordFields)
    #expect(fields.map(\.name) == ["tfd", "events", "data", "pos", "ino", "sdev"])
    #expect(fields.map(\.value) == ["5", "19", "1234", "0", "40e", "10"])
  }

  @Test func locksAndFanotify() throws {
    let text = """
      pos:\t0
      flags:\t02
      mnt_id:\t30
      ino:\t1234
      lock:\t1: POSIX  ADVISORY  WRITE 77 fe:00:1234 0 EOF
      fanotify flags:10 event-flags:0
      fanotify mnt_id:1d mflags:0 mask:3b ignored_mask:0

      """
    let info = try FdInfo.parse(text)
    #expect(info.extra.map(\.key) == ["lock", "fanotify", "fanotify"])
    #expect(info.value(for: "lock") == "1: POSIX  ADVISORY  WRITE 77 fe:00:1234 0 EOF")
    #expect(info.extra[0].recordFields == nil)
    #expect(info.extra[2].recordFields?.first?.value == "1d")
  }

  @Test(arguments: [
    ("pos:\t0\nflags:\t09\nmnt_id:\t1\nino:\t2\n", "fdinfo line 2 is malformed (bad flags)"),
    ("pos:\tx\nflags:\t02\nmnt_id:\t1\nino:\t2\n", "fdinfo line 1 is malformed (bad pos)"),
    ("pos:\t0\npos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t2\n", "fdinfo line 2 is malformed (bad pos)"),
    ("pos:\t0\nflags:\t02\nino:\t2\n", "fdinfo is malformed: no mnt_id line"),
    ("pos:\t0\nflags:\t02\nmnt_id:\t1\n", "fdinfo is malformed: no ino line"),
    ("pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t2\njunk\n", "fdinfo line 5 is malformed (no key)"),
  ])
  func malformed(text: String, message: String) throws {
    let error = try #require(ckError { try FdInfo.parse(text) })
    #expect(error.message.hasPrefix(message), "\(error)")
  }

  @Test func readsThisProcess() throws {
    let fd = open("/dev/null", O_WRONLY | O_APPEND | O_CLOEXEC)
    #expect(fd >= 0)
    defer { close(fd) }
    let info = try FdInfo.read(pid: getpid(), fd: fd)
    #expect(
      info.flags & UInt32(O_CLOEXEC | O_APPEND | O_WRONLY)
        == UInt32(O_CLOEXEC | O_APPEND | O_WRONLY))
    #expect(info.pos == 0 && info.extra.isEmpty)
  }
}
