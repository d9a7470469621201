# The README's code examples are files that tests compile and run (issue 14), kept identical:
#
#   cmake -DREADME=<README.md> -DFILES="<file>;<file>..." -P check.cmake
#
# Each file's whole text must appear in README verbatim (inside its code block). Every one that does
# not is named, then it fails.
cmake_minimum_required(VERSION 3.21)
if(NOT DEFINED README OR NOT EXISTS "${README}" OR NOT DEFINED FILES)
  message(FATAL_ERROR "readme check: pass -DREADME=<README.md> and -DFILES=<files>")
endif()
file(READ "${README}" _readme)
set(_stale "")
foreach(f ${FILES})
  file(READ "${f}" _code)
  string(FIND "${_readme}" "${_code}" _at)
  if(_at EQUAL -1)
    list(APPEND _stale "${f}")
  endif()
endforeach()
if(_stale)
  list(JOIN _stale "\n  " _out)
  message(FATAL_ERROR "readme check: the README's copy differs from:\n  ${_out}\n(paste the file into its code block again)")
endif()
message(STATUS "readme check: the README's examples match their files")
