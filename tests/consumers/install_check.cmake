# `cmake --install` of diffuse into a fresh prefix, and what must land there (issue 14):
#
#   cmake -DBUILD=<diffuse build dir> -DPREFIX=<empty or stale dir> -DCXX=<compiler>
#         [-DPKG_CONFIG=<pkg-config>] -DCONSUMER=<a .cpp including diffuse> -P install_check.cmake
#
# The headers, diffuseConfig.cmake, diffuseConfigVersion.cmake and diffuse.pc; then, where pkg-config
# is there, a compile (front end) of CONSUMER with nothing but `pkg-config --cflags diffuse`.
cmake_minimum_required(VERSION 3.21)
foreach(v BUILD PREFIX CXX CONSUMER)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "install check: pass -D${v}=...")
  endif()
endforeach()

file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD}" --prefix "${PREFIX}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install check: cmake --install failed (${rc})")
endif()

set(_missing "")
foreach(pattern include/diffuse/diffuse.hpp include/diffuse/version.hpp include/diffuse/models/latent_diffusion.hpp
    */cmake/diffuse/diffuseConfig.cmake */cmake/diffuse/diffuseConfigVersion.cmake
    */cmake/diffuse/diffuseTargets.cmake share/pkgconfig/diffuse.pc)
  file(GLOB_RECURSE _found "${PREFIX}/${pattern}")
  if(NOT _found AND NOT EXISTS "${PREFIX}/${pattern}")
    list(APPEND _missing "${pattern}")
  endif()
endforeach()
if(_missing)
  list(JOIN _missing ", " _text)
  message(FATAL_ERROR "install check: missing under ${PREFIX}: ${_text}")
endif()

if(PKG_CONFIG)
  set(ENV{PKG_CONFIG_PATH} "${PREFIX}/share/pkgconfig")
  execute_process(COMMAND ${PKG_CONFIG} --cflags diffuse OUTPUT_VARIABLE _cflags RESULT_VARIABLE rc
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install check: pkg-config --cflags diffuse failed (${rc})")
  endif()
  separate_arguments(_cflags UNIX_COMMAND "${_cflags}")
  execute_process(COMMAND ${CXX} -fsyntax-only ${_cflags} "${CONSUMER}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install check: ${CONSUMER} does not compile with pkg-config's flags: ${_cflags}")
  endif()
  message(STATUS "install check: compiled with pkg-config's flags: ${_cflags}")
endif()
message(STATUS "install check: headers, CMake config, version file and diffuse.pc in ${PREFIX}")
