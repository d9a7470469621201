# The umbrella header includes every public header (issue 14):
#
#   cmake -DROOT=<dir holding diffuse/> [-DUMBRELLA=<file>] -P check.cmake
#
# Every header under ROOT/diffuse/<folder>/ must appear in an #include line of UMBRELLA (default:
# ROOT/diffuse/diffuse.hpp). Headers of dist/ count as included from inside an #ifdef as well: the
# umbrella includes them only where the build has MPI. Every header left out is listed, then it fails.
cmake_minimum_required(VERSION 3.21)

if(NOT DEFINED ROOT OR NOT IS_DIRECTORY "${ROOT}/diffuse")
  message(FATAL_ERROR "umbrella check: pass -DROOT=<dir> holding diffuse/ (got '${ROOT}')")
endif()
if(NOT DEFINED UMBRELLA)
  set(UMBRELLA "${ROOT}/diffuse/diffuse.hpp")
endif()
if(NOT EXISTS "${UMBRELLA}")
  message(FATAL_ERROR "umbrella check: ${UMBRELLA} does not exist")
endif()

file(STRINGS "${UMBRELLA}" _lines REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]diffuse/")
set(_included "")
foreach(line ${_lines})
  string(REGEX MATCH "[\"<](diffuse/[^\">]*)[\">]" _m "${line}")
  list(APPEND _included "${CMAKE_MATCH_1}")
endforeach()

file(GLOB_RECURSE _headers RELATIVE "${ROOT}" "${ROOT}/diffuse/*/*.hpp")
list(SORT _headers)
set(_missing "")
foreach(h ${_headers})
  if(NOT h IN_LIST _included)
    list(APPEND _missing "${h}")
  endif()
endforeach()
if(_missing)
  list(JOIN _missing "\n  " _text)
  message(FATAL_ERROR "umbrella check: ${UMBRELLA} leaves out:\n  ${_text}")
endif()
list(LENGTH _headers _n)
message(STATUS "umbrella check: all ${_n} headers included")
